{{/* Checks across several values, which values.schema.json cannot express. */}}
{{- define "credbroker.validate" -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.health.port)) }}
{{- fail (printf "metrics.port and health.port are both %v; give them different ports" .Values.metrics.port) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: true" }}
{{- end }}
{{- if .Values.exchange.enabled }}
{{- if not .Values.exchange.tlsSecretName }}
{{- fail (printf "exchange.tlsSecretName is required when exchange.enabled is true: name a Secret with tls.crt and tls.key in namespace %s (cert-manager writes one; set exchange.certManager.issuerRef to have the chart request it)" .Release.Namespace) }}
{{- end }}
{{- if eq (int .Values.exchange.port) (int .Values.health.port) }}
{{- fail (printf "exchange.port and health.port are both %v; give them different ports" .Values.exchange.port) }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.exchange.port) (int .Values.metrics.port)) }}
{{- fail (printf "exchange.port and metrics.port are both %v; give them different ports" .Values.exchange.port) }}
{{- end }}
{{- end }}
{{- if and .Values.exchange.certManager.issuerRef (not .Values.exchange.certManager.issuerRef.name) }}
{{- fail "exchange.certManager.issuerRef needs a name, such as {name: internal-ca, kind: ClusterIssuer}" }}
{{- end }}
{{- end }}
