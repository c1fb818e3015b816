package policy

import (
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
