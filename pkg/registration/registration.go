// Package registration holds how podgrace is registered with the API server,
// each fact once: the names the API server reaches podgrace by, the namespace
// it is installed in by default, and which pods are sent to it. The chart's
// templates write the same (test/chart proves them identical); the webhook,
// the policy generator and the audit read them from here.
package registration

const (
	// Path is where the mutating handler is served.
	Path = "/mutate-v1-pod"
	// WebhookName is the name of podgrace's webhook inside its
	// MutatingWebhookConfiguration (a fully qualified name, as the API server
	// requires).
	WebhookName = "pods.podgrace.dev"
	// TimeoutSeconds bounds one call: the API server gives up after it and,
	// with failurePolicy Ignore, admits the pod unmutated. The chart's
	// webhook.timeoutSeconds defaults to it.
	TimeoutSeconds int32 = 5
	// DefaultNamespace is podgrace's namespace in the README's install, and
	// where the CLI looks when the cluster does not say (FindInstallation).
	DefaultNamespace = "podgrace-system"
)
