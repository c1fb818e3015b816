{{/* The namespace and object selection of the admission policies' bindings:
the webhook's (mutatingwebhookconfiguration.yaml). */}}
{{- define "podgrace.policyMatch" }}
matchResources:
  namespaceSelector:
    {{- include "podgrace.namespaceSelector" .root | nindent 4 }}
  objectSelector:
    {{- include "podgrace.objectSelector" .root | nindent 4 }}
{{- end }}
