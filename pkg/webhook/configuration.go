package webhook

import "github.com/podgrace/podgrace/pkg/registration"

// The names the API server uses to reach podgrace, declared in
// pkg/registration (docs/design.md §7); test/chart checks that the chart's
// templates/mutatingwebhookconfiguration.yaml uses them.
const (
	// Path is where the mutating handler is served.
	Path = registration.Path
	// WebhookName is the name of podgrace's webhook inside the configuration.
	WebhookName = registration.WebhookName
	// TimeoutSeconds bounds one call.
	TimeoutSeconds = registration.TimeoutSeconds
	// WorkloadPath is where the validating workload handler is served.
	WorkloadPath = "/validate-workloads"
	// WorkloadWebhookName is the workload check's name inside the
	// ValidatingWebhookConfiguration.
	WorkloadWebhookName = "workloads.podgrace.dev"
)
