{{/* The chart's name, at most 63 characters. */}}
{{- define "savepoint-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: the release name when it already holds the chart's name
(`helm install savepoint-webhook ...` names everything savepoint-webhook, as deploy/base
does), else RELEASE-CHART. At most 56 characters, so that "-delete" and "-tls" fit.
*/}}
{{- define "savepoint-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := include "savepoint-webhook.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "savepoint-webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "savepoint-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The pods' identity: never change it after an install (a selector is immutable). */}}
{{- define "savepoint-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "savepoint-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret with tls.crt, tls.key and ca.crt that the pods mount. */}}
{{- define "savepoint-webhook.tlsSecret" -}}
{{- printf "%s-tls" (include "savepoint-webhook.fullname" .) }}
{{- end }}

{{/* The Service's DNS names, which the serving certificate must hold. */}}
{{- define "savepoint-webhook.dnsNames" -}}
{{- $svc := include "savepoint-webhook.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Whether the server accepts matchConditions (GA in 1.30). */}}
{{- define "savepoint-webhook.matchConditionsSupported" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version }}true{{ end }}
{{- end }}
