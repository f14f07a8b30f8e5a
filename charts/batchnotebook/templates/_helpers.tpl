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

{{/* The namespaces BatchNotebooks and their Secrets live in, as a JSON list (fromJsonArray):
by default one of their own next to the hub's. Never the hub's namespace itself: the operator
reads Secrets where notebooks are, and the hub's own (cookie secret, proxy token, database
password) are there. */}}
{{- define "batchnotebook.notebookNamespaces" -}}
{{- $hubNamespace := include "batchnotebook.hubNamespace" . -}}
{{- $namespaces := .Values.notebookNamespaces | default (list (printf "%s-notebooks" $hubNamespace)) | uniq -}}
{{- if has $hubNamespace $namespaces -}}
{{- fail (printf "notebookNamespaces must not include the hub's namespace %s: the operator would read the hub's own Secrets there (see README.md, RBAC)" $hubNamespace) -}}
{{- end -}}
{{- $namespaces | toJson -}}
{{- end }}

{{/* The operator's own Secrets, by name. */}}
{{- define "batchnotebook.ownSecrets" -}}
{{- concat .Values.secrets.sshKeys .Values.secrets.knownHosts .Values.secrets.jwtKeys | uniq | toJson -}}
{{- end }}

{{- define "batchnotebook.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}
