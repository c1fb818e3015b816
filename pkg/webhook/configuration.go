package webhook

// The names the API server uses to reach podgrace. The registration itself
// is written once, in the chart's templates/mutatingwebhookconfiguration.yaml
// (docs/design.md §7); test/chart checks that it uses these.
const (
	// Path is where the mutating handler is served.
	Path = "/mutate-v1-pod"
	// WebhookName is the name of podgrace's webhook inside the configuration
	// (a fully qualified name, as the API server requires).
	WebhookName = "pods.podgrace.dev"
	// WorkloadPath is where the validating workload handler is served.
	WorkloadPath = "/validate-workloads"
	// WorkloadWebhookName is the workload check's name inside the
	// ValidatingWebhookConfiguration.
	WorkloadWebhookName = "workloads.podgrace.dev"
	// TimeoutSeconds bounds one call: the API server gives up after it and,
	// with failurePolicy Ignore, admits the pod unmutated.
	TimeoutSeconds int32 = 5
)
