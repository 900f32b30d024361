{{/* Checks across several values, which values.schema.json cannot express. */}}
{{- define "credbroker.validate" -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.health.port)) }}
{{- fail (printf "metrics.port and health.port are both %v; give them different ports" .Values.metrics.port) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: true" }}
{{- end }}
{{- end }}
