package policy

import (
	"strings"
	"testing"
	"time"
)

// TestWholeSeconds: a duration the mutation counts in whole seconds is
// refused with a fraction, not truncated (issue 23: shutdownBudget 1.5s
// became 1s).
func TestWholeSeconds(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"min", "max", "shutdownBudget", "sidecarShutdownBudget"} {
		_, err := ParseConfig([]byte(key + ": 1.5s\n"))
		if err == nil || !strings.Contains(err.Error(), key+": 1.5s is not a whole number of seconds") {
			t.Errorf("%s: 1.5s: got %v", key, err)
		}
	}
	if _, err := ParseConfig([]byte("shutdownBudget: 2s\n")); err != nil {
		t.Errorf("shutdownBudget: 2s: %v", err)
	}
}

// TestCheckWebhookTimeout: the image inspection deadline must fit below the
// webhook's timeoutSeconds with a second to spare.
func TestCheckWebhookTimeout(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cases := []struct {
		inspection, webhook time.Duration
		enabled, ok         bool
	}{
		{2 * time.Second, 5 * time.Second, true, true},
		{4 * time.Second, 5 * time.Second, true, true},
		{8 * time.Second, 5 * time.Second, true, false},
		{5 * time.Second, 5 * time.Second, true, false},
		{8 * time.Second, 5 * time.Second, false, true},
		{8 * time.Second, 0, true, true},
		{2 * time.Second, 31 * time.Second, true, false},
		{2 * time.Second, 5500 * time.Millisecond, true, false},
	}
	for _, tc := range cases {
		cfg.ImageInspection.Enabled, cfg.ImageInspection.Timeout.Duration = tc.enabled, tc.inspection
		if err := CheckWebhookTimeout(&cfg, tc.webhook); (err == nil) != tc.ok {
			t.Errorf("inspection %v (enabled %t), webhook %v: got %v, want ok %t", tc.inspection, tc.enabled, tc.webhook, err, tc.ok)
		}
	}
}
