{{- define "batchnotebook.labels" -}}
app.kubernetes.io/name: batchnotebook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}
