{{/*
The chart name, or nameOverride. Truncated to 63 characters (the limit of a label value).
*/}}
{{- define "jitrbac.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name used for resources: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". Truncated to 63 characters (some
Kubernetes name fields are DNS labels).
*/}}
{{- define "jitrbac.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "jitrbac.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource of the chart.
*/}}
{{- define "jitrbac.labels" -}}
helm.sh/chart: {{ include "jitrbac.chart" . }}
{{ include "jitrbac.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jitrbac
{{- end }}

{{/*
Labels that identify the pods of this release (operator and sweeper). Never change them:
the Deployment's selector is immutable.
*/}}
{{- define "jitrbac.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jitrbac.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the operator pods only (not the sweeper CronJob's pods), for the
Deployment, the metrics Service and the PodDisruptionBudget.
*/}}
{{- define "jitrbac.operatorSelectorLabels" -}}
{{ include "jitrbac.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The name of the ServiceAccount the operator and the sweeper run as.
*/}}
{{- define "jitrbac.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jitrbac.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The name of the leader-election Lease.
*/}}
{{- define "jitrbac.leaseName" -}}
{{- default (include "jitrbac.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The container image: repository@digest when a digest is set, else repository:tag (tag
defaults to the chart's appVersion).
*/}}
{{- define "jitrbac.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express. Fails the render with a
message naming the values to change.
*/}}
{{- define "jitrbac.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: more than one replica would act on the same grants at once. Enable leader election or set replicaCount to 1." (int .Values.replicaCount)) }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) }}
{{- fail (printf "metrics.port and health.port are both %d: they must differ." (int .Values.metrics.port)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes the metrics Service." }}
{{- end }}
{{- end }}
