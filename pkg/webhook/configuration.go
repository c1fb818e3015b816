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
)
