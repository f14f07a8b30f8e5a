{{/* <release>-batchnotebook, or the release name if it already says batchnotebook. */}}
{{- define "batchnotebook.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "batchnotebook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "batchnotebook.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "batchnotebook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (printf "%s-operator" (include "batchnotebook.fullname" .)) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{- define "batchnotebook.hubNamespace" -}}
{{- .Values.hub.namespace | default .Release.Namespace -}}
{{- end }}

{{/* The namespaces BatchNotebooks live in, as a JSON list (fromJsonArray). */}}
{{- define "batchnotebook.notebookNamespaces" -}}
{{- .Values.notebookNamespaces | default (list (include "batchnotebook.hubNamespace" .)) | uniq | toJson -}}
{{- end }}

{{/* The operator's own Secrets, by name. */}}
{{- define "batchnotebook.ownSecrets" -}}
{{- concat .Values.secrets.sshKeys .Values.secrets.knownHosts .Values.secrets.jwtKeys | uniq | toJson -}}
{{- end }}

{{- define "batchnotebook.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}
