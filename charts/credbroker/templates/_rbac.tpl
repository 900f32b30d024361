{{/*
Rules for the namespaces where CredentialBindings live: every namespace when
watchNamespaces is empty, otherwise each listed one.
*/}}
{{- define "credbroker.bindingRules" -}}
# list, watch: kopf's watch that starts a reconcile daemon per binding and
# runs the deletion handler. patch: kopf adds and removes the finalizer
# credbroker.dev/finalizer and writes its credbroker.dev/* annotations.
- apiGroups: [credbroker.dev]
  resources: [credentialbindings]
  verbs: [list, watch, patch]
{{- if .Values.exchange.enabled }}
# The exchange endpoint reads the binding named in each request
# (KubeExchangeCluster.get_binding).
- apiGroups: [credbroker.dev]
  resources: [credentialbindings]
  verbs: [get]
{{- end }}
# The reconcile daemon writes conditions, the credential id and expiry
# (KubeGateway.patch_binding_status).
- apiGroups: [credbroker.dev]
  resources: [credentialbindings/status]
  verbs: [patch]
# Delivered Secrets carry an ownerReference to their binding with
# blockOwnerDeletion: true. Clusters that enable the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift does)
# accept that only from a client that may update the owner's finalizers.
- apiGroups: [credbroker.dev]
  resources: [credentialbindings/finalizers]
  verbs: [update]
# kopf's pod watch (handlers.pod_event) feeds the pod registry. Without the
# exchange endpoint the operator never reads a single pod, so there is no get.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- if .Values.exchange.enabled }}
# The exchange endpoint reads the pod named in a presented service-account
# token, to check that it exists, is not terminating and has the claimed uid
# and ServiceAccount (KubeExchangeCluster.get_pod).
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
{{- end }}
# PodAttestor._request_token asks for a token bound to each selected pod
# (TokenRequest on the pod's ServiceAccount).
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
# SecretStore: get (read before write, renewal and teardown), create and
# update (write the credential, replace it on renewal), patch
# (KubeGateway.patch_secret_annotations during renewal), delete (revocation
# and sweep, with uid and resourceVersion preconditions), list (the sweep
# lists Secrets with the label app.kubernetes.io/managed-by=credbroker).
# RBAC cannot limit a verb to labelled Secrets, so these verbs cover every
# Secret in scope. Nothing watches Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, create, update, patch, delete]
# Events on bindings and on rejected pods (kopf.event, posted by kopf with
# POST only, never patched).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
