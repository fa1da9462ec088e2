{{/* Names: every object is named after the release (Helm keeps release names within 53
characters), a suffix added within Kubernetes' 63. */}}
{{- define "monitoring-dashboard.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "monitoring-dashboard.suffixed" -}}
{{- printf "%s-%s" .root.Release.Name .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The version as a label value: at most 63 characters, ending alphanumeric. */}}
{{- define "monitoring-dashboard.version" -}}
{{- regexReplaceAll "[^A-Za-z0-9]+$" (.Values.image.tag | trunc 63) "" }}
{{- end }}

{{/* Kubernetes' recommended labels, the version included. */}}
{{- define "monitoring-dashboard.labels" -}}
{{ include "monitoring-dashboard.selector" . }}
app.kubernetes.io/version: {{ include "monitoring-dashboard.version" . | quote }}
app.kubernetes.io/component: api
app.kubernetes.io/part-of: monitoring-dashboard
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{- end }}

{{/* What the Deployment, the Service and the budget select: never the version. */}}
{{- define "monitoring-dashboard.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
