// Package kubewarn collects the warnings an API server returns to a client
// (rest.Config.WarningHandler), for the demo and the API-server test suites.
package kubewarn

import "sync"

// Collector is a rest.WarningHandler that keeps every warning, in order.
type Collector struct {
	mu   sync.Mutex
	list []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (c *Collector) HandleWarningHeader(_ int, _ string, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, text)
}

// Take returns the warnings received since the last Take, and forgets them.
func (c *Collector) Take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.list
	c.list = nil
	return out
}
