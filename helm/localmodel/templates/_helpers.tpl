{{/* Names, labels and images shared by every template. */}}

{{- define "localmodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: "<release>-<chart>", or just the release when it already says it. */}}
{{- define "localmodel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped names carry the namespace so that releases in two namespaces do not collide. */}}
{{- define "localmodel.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "localmodel.fullname" .) }}
{{- end }}

{{/* Where the router's automatic setup creates LocalModels. */}}
{{- define "localmodel.autoSetupNamespace" -}}
{{- .Values.router.autoSetup.namespace | default (first .Values.watchNamespaces) | default .Release.Namespace }}
{{- end }}

{{- define "localmodel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "localmodel.labels" -}}
helm.sh/chart: {{ include "localmodel.chart" . }}
{{ include "localmodel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: localmodel
{{- end }}

{{- define "localmodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "localmodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Component labels: include with (dict "ctx" $ "component" "router"). */}}
{{- define "localmodel.componentLabels" -}}
{{ include "localmodel.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "localmodel.componentSelector" -}}
{{ include "localmodel.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "localmodel.tag" -}}
{{- default .Chart.AppVersion .Values.tag }}
{{- end }}

{{- define "localmodel.image" -}}
{{- $repository := default (printf "%s/operator" .Values.registry) .Values.image.repository }}
{{- printf "%s:%s" $repository (default (include "localmodel.tag" .) .Values.image.tag) }}
{{- end }}

{{- define "localmodel.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "localmodel.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "localmodel.routerServiceAccount" -}}
{{- if .Values.router.serviceAccount.create }}
{{- default (printf "%s-router" (include "localmodel.fullname" .)) .Values.router.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.router.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's configuration file (see operator/localmodel_operator/settings.py). */}}
{{- define "localmodel.operatorConfig" -}}
{{- $config := deepCopy .Values.operator.config }}
{{- $_ := set $config "registry" .Values.registry }}
{{- $_ = set $config "tag" (include "localmodel.tag" .) }}
{{- $_ = set $config "namespaces" .Values.watchNamespaces }}
{{- if .Values.runtimeAuth.enabled }}
{{- $_ = set $config "runtimeKeyFile" "/etc/localmodel-runtime-key/key" }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The hardened container securityContext shared by operator and router. */}}
{{- define "localmodel.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{- define "localmodel.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Namespaces that get a runtime NetworkPolicy: every watched one, plus `networkPolicy.namespaces`. */}}
{{- define "localmodel.networkPolicyNamespaces" -}}
{{- $namespaces := concat .Values.watchNamespaces .Values.networkPolicy.namespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- end }}
