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
The name of the sweeper CronJob's own ServiceAccount (and of its ClusterRole and
ClusterRoleBinding).
*/}}
{{- define "jitrbac.sweeperName" -}}
{{- printf "%s-sweeper" (include "jitrbac.fullname" .) }}
{{- end }}

{{/*
The name of the metrics Service. A Service name is a DNS label: at most 63 characters.
The chart's ServiceMonitor scrapes it, so the Prometheus Operator gives the operator's
series this name as their `job` label, which the PrometheusRule and the dashboard select.
*/}}
{{- define "jitrbac.metricsName" -}}
{{- printf "%s-metrics" (include "jitrbac.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
The labels of one alert, for (dict "root" $ "severity" ...): prometheusRule.alertLabels and
the alert's severity (which wins on a clash).
*/}}
{{- define "jitrbac.alertLabels" -}}
{{- toYaml (merge (dict "severity" .severity) (.root.Values.metrics.prometheusRule.alertLabels | default dict)) }}
{{- end }}

{{/*
The runbook_url of one alert, for (list $ "AlertName"): prometheusRule.runbookBaseUrl and
the anchor of the alert's section in docs/runbook.md (its heading is the alert name).
*/}}
{{- define "jitrbac.runbookUrl" -}}
{{- $root := index . 0 }}
{{- printf "%s#%s" $root.Values.metrics.prometheusRule.runbookBaseUrl (index . 1 | lower) }}
{{- end }}

{{/*
The name of the webhook Service and of the cert-manager Certificate. A Service name is a
DNS label: at most 63 characters.
*/}}
{{- define "jitrbac.webhookName" -}}
{{- printf "%s-webhook" (include "jitrbac.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
The name of the Secret holding the webhook's TLS certificate: managed by the operator
(--webhook-secret), or written by cert-manager and mounted (webhook.certManager.enabled).
*/}}
{{- define "jitrbac.webhookSecretName" -}}
{{- printf "%s-tls" (include "jitrbac.webhookName" .) }}
{{- end }}

{{/*
The DNS names of the webhook Service, which its serving certificate must carry
(--webhook-hosts and the cert-manager Certificate's dnsNames). A list in YAML.
*/}}
{{- define "jitrbac.webhookHosts" -}}
{{- $service := printf "%s.%s.svc" (include "jitrbac.webhookName" .) .Release.Namespace -}}
- {{ $service }}
- {{ $service }}.cluster.local
{{- end }}

{{/*
The namespaces in which every grant is denied (--protected-namespaces): the cluster's
system namespaces, the release namespace (where the operator's own credentials live) and
operator.extraProtectedNamespaces, without duplicates, comma-separated.
*/}}
{{- define "jitrbac.protectedNamespaces" -}}
{{- $fixed := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace }}
{{- concat $fixed (.Values.operator.extraProtectedNamespaces | default (list)) | uniq | join "," }}
{{- end }}

{{/*
Whether the operator manages the webhook certificate itself ("true" or ""): the webhooks
are enabled and cert-manager is not used. Then it needs the certificate Secret and the
webhook configurations (to write their CA bundle).
*/}}
{{- define "jitrbac.selfManagedTLS" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) }}true{{ end }}
{{- end }}

{{/*
The clientConfig of one webhook, for (dict "root" $ "path" "/mutate-..."): the webhook
Service on port 443, or webhook.url followed by the path (development only).
*/}}
{{- define "jitrbac.webhookClientConfig" -}}
{{- $root := .root -}}
clientConfig:
{{- if $root.Values.webhook.url }}
  # webhook.url: an operator running outside the cluster (development only).
  url: {{ printf "%s%s" $root.Values.webhook.url .path | quote }}
{{- else }}
  service:
    name: {{ include "jitrbac.webhookName" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- end }}
{{- end }}

{{/*
The settings shared by every jitrbac webhook.
*/}}
{{- define "jitrbac.webhookCommon" -}}
admissionReviewVersions: ["v1"]
{{- if .ignoreFailure }}
# Fail open: while no operator replica answers, the request goes ahead unchanged (the
# CRD's own rules still hold).
failurePolicy: Ignore
{{- else }}
# Fail closed: while no operator replica answers, the request is refused.
failurePolicy: Fail
{{- end }}
# The webhook only computes a patch or a verdict, so it is also called on dry runs.
sideEffects: None
# Also called when the same resources are requested through another API version.
matchPolicy: Equivalent
timeoutSeconds: {{ int .root.Values.webhook.timeoutSeconds }}
{{- end }}

{{/*
The annotations of the webhook configurations: with cert-manager, its cainjector writes
the CA of the webhook Certificate into every webhook's caBundle. Empty otherwise.
*/}}
{{- define "jitrbac.webhookAnnotations" -}}
{{- if .Values.webhook.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "jitrbac.webhookName" .) }}
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
{{- if .Values.webhook.enabled }}
{{- range $key := list "metrics" "health" }}
{{- if eq (int (get (get $.Values $key) "port")) (int $.Values.webhook.port) }}
{{- fail (printf "%s.port and webhook.port are both %d: they must differ." $key (int $.Values.webhook.port)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.webhook.certManager.enabled (not .Values.webhook.enabled) }}
{{- fail "webhook.certManager.enabled needs webhook.enabled: the cert-manager certificate is only for the admission webhooks." }}
{{- end }}
{{- if and .Values.webhook.certManager.enabled .Values.webhook.url }}
{{- fail "webhook.url cannot be combined with webhook.certManager.enabled: the cert-manager certificate names the in-cluster webhook Service, not the URL. Unset one of them (webhook.url is for an operator running outside the cluster, which manages its own certificate)." }}
{{- end }}
{{- if and .Values.admissionPolicies.enabled (not .Values.webhook.enabled) }}
{{- fail "admissionPolicies.enabled needs webhook.enabled: without the webhook no AccessGrant or GrantReview gets its requester or reviewer stamped, and the jitrbac-requester and jitrbac-reviewer policies would reject them all. Enable the webhook or set admissionPolicies.enabled=false." }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes the metrics Service." }}
{{- end }}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.prometheusRule.enabled needs metrics.service.enabled: the alerts select the operator's series by the job label of the metrics Service." }}
{{- end }}
{{- if .Values.metrics.prometheusRule.enabled }}
{{- $enabled := list }}
{{- range $name, $alert := .Values.metrics.prometheusRule.alerts }}
{{- if $alert.enabled }}{{ $enabled = append $enabled $name }}{{ end }}
{{- end }}
{{- if not $enabled }}
{{- fail "metrics.prometheusRule.enabled is true but every alert in metrics.prometheusRule.alerts is disabled: enable one or set metrics.prometheusRule.enabled=false." }}
{{- end }}
{{- end }}
{{- end }}
