{{/*
Helpers of the podgrace chart. Names follow `helm create`: fullname is the
release name, with the chart name appended unless the release name contains it.
*/}}

{{- define "podgrace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podgrace.fullname" -}}
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

{{- define "podgrace.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "podgrace.labels" -}}
helm.sh/chart: {{ include "podgrace.chart" . }}
{{ include "podgrace.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podgrace
{{- end }}

{{/* Labels that select podgrace's pods. */}}
{{- define "podgrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podgrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The label that tells the metrics Service from the webhook Service. */}}
{{- define "podgrace.metricsComponent" -}}
app.kubernetes.io/component: metrics
{{- end }}

{{/* The Service the API server calls, and the DNS names of its certificate. */}}
{{- define "podgrace.serviceName" -}}
{{- printf "%s-webhook" (include "podgrace.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podgrace.dnsNames" -}}
{{- $svc := include "podgrace.serviceName" . }}
- {{ $svc }}
- {{ $svc }}.{{ .Release.Namespace }}
- {{ $svc }}.{{ .Release.Namespace }}.svc
- {{ $svc }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}

{{/* The Secret holding the serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "podgrace.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "podgrace.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podgrace.certificateName" -}}
{{- printf "%s-webhook" (include "podgrace.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podgrace.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the serving certificate is mounted or written. */}}
{{- define "podgrace.certDir" -}}
/var/run/podgrace/serving-certs
{{- end }}

{{- define "podgrace.configDir" -}}
/etc/podgrace
{{- end }}

{{/* terminationGracePeriodSeconds: the preStop sleep, the drain, a margin. */}}
{{- define "podgrace.gracePeriod" -}}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainDelaySeconds .Values.shutdown.extraGraceSeconds }}
{{- end }}

{{/*
podgrace.checkDeadlines fails when config.imageInspection.timeout does not
fit 1s below webhook.timeoutSeconds: the API server would give up first and
admit the pods unmutated. The binary refuses the same
(policy.CheckWebhookTimeout, --webhook-timeout); this fails helm first.
*/}}
{{- define "podgrace.checkDeadlines" -}}
{{- $ii := .Values.config.imageInspection | default dict -}}
{{- if and $ii.enabled $ii.timeout -}}
{{- $ms := include "podgrace.durationMs" $ii.timeout | float64 -}}
{{- if gt (addf $ms 1000.0) (mulf .Values.webhook.timeoutSeconds 1000.0) -}}
{{- fail (printf "config.imageInspection.timeout (%s) does not fit webhook.timeoutSeconds (%v): it must be at most timeoutSeconds - 1s, or the API server gives up first and admits pods unmutated" $ii.timeout .Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
podgrace.durationMs renders a Go duration string ("2s", "1m30s", "500ms") in milliseconds.
*/}}
{{- define "podgrace.durationMs" -}}
{{- $units := dict "ns" 0.000001 "us" 0.001 "µs" 0.001 "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9.]+(ns|us|µs|ms|s|m|h)" (toString .) -1 -}}
{{- $num := regexFind "^[0-9.]+" . -}}
{{- $total = addf $total (mulf ($num | float64) (get $units (trimPrefix $num .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Which pods the API server sends to podgrace, for the pod webhook, the workload
check and the policy bindings alike: written once here, as registration.Selection in Go
(TestSelectionMatchesChart renders both and compares).
*/}}
{{- define "podgrace.namespaceSelector" -}}
matchExpressions:
  {{- if eq .Values.webhook.mode "cluster-wide" }}
  - key: podgrace.dev/inject
    operator: NotIn
    values: ["disabled"]
  {{- else }}
  - key: podgrace.dev/inject
    operator: In
    values: ["enabled"]
  {{- end }}
  # Never the system namespaces nor podgrace's own (its pods must start
  # without it). kubernetes.io/metadata.name is set on every namespace.
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range concat (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq }}
      - {{ . }}
      {{- end }}
  {{- with .Values.webhook.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{- define "podgrace.objectSelector" -}}
matchExpressions:
  - key: podgrace.dev/inject
    operator: NotIn
    values: ["disabled"]
{{- end }}
