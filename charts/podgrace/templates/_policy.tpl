{{/* The namespace and object selection of the admission policies' bindings:
the webhook's (mutatingwebhookconfiguration.yaml). */}}
{{- define "podgrace.policyMatch" }}
matchResources:
  namespaceSelector:
    matchExpressions:
      {{- if eq .root.Values.webhook.mode "cluster-wide" }}
      - key: podgrace.dev/inject
        operator: NotIn
        values: ["disabled"]
      {{- else }}
      - key: podgrace.dev/inject
        operator: In
        values: ["enabled"]
      {{- end }}
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values:
          {{- range concat (list "kube-system" "kube-public" "kube-node-lease" .root.Release.Namespace) .root.Values.webhook.excludeNamespaces | uniq }}
          - {{ . }}
          {{- end }}
      {{- with .root.Values.webhook.namespaceSelectorExpressions }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  objectSelector:
    matchExpressions:
      - key: podgrace.dev/inject
        operator: NotIn
        values: ["disabled"]
{{- end }}
