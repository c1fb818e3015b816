package policy

import (
	"errors"
	"fmt"
	"time"
)

// WebhookTimeoutMargin is what an admission needs besides image inspection
// within the webhook's timeoutSeconds: reading and decoding the review, the
// namespace lookup, the pull secrets, the mutation, the answer.
const WebhookTimeoutMargin = time.Second

// CheckWebhookTimeout refuses an image inspection timeout that does not fit
// below the webhook's timeoutSeconds with WebhookTimeoutMargin to spare: the
// API server would give up first, and every pod whose images are inspected
// would be admitted unmutated, missing even its sleep (issue 23). timeout
// zero means unknown: nothing is checked. The chart's template runs the same
// check (podgrace.checkDeadlines in _helpers.tpl) so that helm fails first.
func CheckWebhookTimeout(c *Config, timeout time.Duration) error {
	if timeout == 0 {
		return nil
	}
	if timeout < time.Second || timeout > 30*time.Second || timeout%time.Second != 0 {
		return fmt.Errorf("webhook timeout %v: the API server takes whole seconds from 1s to 30s", timeout)
	}
	if !c.ImageInspection.Enabled {
		return nil
	}
	if it := c.ImageInspection.Timeout.Duration; it+WebhookTimeoutMargin > timeout {
		return fmt.Errorf("imageInspection.timeout (%v) does not fit the webhook's timeoutSeconds (%v): it must be at most timeoutSeconds - %v", it, timeout, WebhookTimeoutMargin)
	}
	return nil
}

// wholeSeconds lists the durations the mutation counts in whole seconds (the
// sleep action and terminationGracePeriodSeconds do): a fraction would be
// dropped silently, so Validate refuses it. maxGracePeriod is checked with
// its floor in Validate.
var wholeSeconds = []struct {
	path string
	get  func(*Config) time.Duration
}{
	{"min", func(c *Config) time.Duration { return c.Min.Duration }},
	{"max", func(c *Config) time.Duration { return c.Max.Duration }},
	{"shutdownBudget", func(c *Config) time.Duration { return c.ShutdownBudget.Duration }},
	{"sidecarShutdownBudget", func(c *Config) time.Duration { return c.SidecarShutdownBudget.Duration }},
}

func (c *Config) validateWholeSeconds() error {
	var errs []error
	for _, w := range wholeSeconds {
		if d := w.get(c); d%time.Second != 0 {
			errs = append(errs, fmt.Errorf("%s: %v is not a whole number of seconds", w.path, d))
		}
	}
	return errors.Join(errs...)
}
