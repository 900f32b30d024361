{{/* Chart name, shortened to the 63 characters of a Kubernetes label value. */}}
{{- define "credbroker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. A release named like the chart gets the
chart name alone; 52 characters leave room for the suffixes added below and
for the pod names of a StatefulSet.
*/}}
{{- define "credbroker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "credbroker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "credbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "credbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "credbroker.labels" -}}
helm.sh/chart: {{ include "credbroker.chart" . }}
{{ include "credbroker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "credbroker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "credbroker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Whether replicas take part in kopf peering: "true" or "". */}}
{{- define "credbroker.peered" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{- define "credbroker.peeringName" -}}
{{- default (include "credbroker.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "credbroker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Arguments of `credbroker run`; `credbroker run --help` documents each flag. */}}
{{- define "credbroker.args" -}}
- run
{{- range .Values.watchNamespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- else }}
- --all-namespaces
{{- end }}
- {{ printf "--audience=%s" .Values.operator.audience | quote }}
{{- with .Values.operator.issuer }}
- {{ printf "--issuer=%s" . | quote }}
{{- end }}
{{- with .Values.operator.jwksUri }}
- {{ printf "--jwks-uri=%s" . | quote }}
{{- end }}
- --sweep-interval={{ .Values.operator.sweepIntervalSeconds }}
- --orphan-min-age={{ .Values.operator.orphanMinAgeSeconds }}
- --retry-delay={{ .Values.operator.retryDelaySeconds }}
- --api-threads={{ .Values.operator.apiThreads }}
- --watch-timeout={{ .Values.operator.watchTimeoutSeconds }}
{{- with .Values.operator.podLabelSelector }}
- {{ printf "--pod-label-selector=%s" . | quote }}
{{- end }}
- --liveness=http://0.0.0.0:{{ .Values.health.port }}/healthz
{{- if .Values.metrics.enabled }}
- --metrics-port={{ .Values.metrics.port }}
{{- else }}
{{- /* The operator serves metrics on port 9090 unless told 0. */}}
- --metrics-port=0
{{- end }}
{{- if .Values.exchange.enabled }}
- --exchange-port={{ .Values.exchange.port }}
- {{ printf "--exchange-tls-secret=%s" .Values.exchange.tlsSecretName | quote }}
- --exchange-burst={{ .Values.exchange.burst }}
- --exchange-rate={{ .Values.exchange.rate }}
{{- end }}
- --log-format={{ .Values.operator.logFormat }}
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
{{- if include "credbroker.peered" . }}
- {{ printf "--peering=%s" (include "credbroker.peeringName" .) | quote }}
{{- /* Kubernetes substitutes $(POD_INDEX) from the container's environment. */}}
- --priority=$(POD_INDEX)
{{- end }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* Pod template shared by the Deployment (one replica) and the StatefulSet (peering). */}}
{{- define "credbroker.podTemplate" -}}
metadata:
  labels:
    {{- include "credbroker.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "credbroker.serviceAccountName" . }}
  # The operator calls the API server with this pod's service-account token.
  automountServiceAccountToken: true
  enableServiceLinks: false
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  # Revocations on shutdown get time to finish: kopf stops daemons within 10 s.
  terminationGracePeriodSeconds: 30
  containers:
    - name: operator
      image: {{ include "credbroker.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "credbroker.args" . | nindent 8 }}
      env:
        # The operator's namespace: where it reads the targets' admin Secrets.
        - name: CREDBROKER_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        # kopf names this replica after the pod in the peering object.
        - name: POD_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if include "credbroker.peered" . }}
        # The StatefulSet ordinal (0, 1, ...), used as this replica's peering priority.
        - name: POD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        - name: PYTHONDONTWRITEBYTECODE
          value: "1"
        - name: PYTHONUNBUFFERED
          value: "1"
      ports:
        - name: health
          containerPort: {{ .Values.health.port }}
          protocol: TCP
        {{- if .Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
        {{- end }}
        {{- if .Values.exchange.enabled }}
        - name: exchange
          containerPort: {{ .Values.exchange.port }}
          protocol: TCP
        {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        # The root filesystem is read-only; libraries that need a temporary file get this.
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "credbroker.exchangeServiceName" -}}
{{- printf "%s-exchange" (include "credbroker.fullname" .) }}
{{- end }}
