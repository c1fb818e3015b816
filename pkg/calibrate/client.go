package calibrate

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ClientStats is what the client's admin endpoint /stats returns.
type ClientStats struct {
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
	// ProbeAnswers counts answers that carry ProbeHeader: the URL reaches
	// the probe Service.
	ProbeAnswers uint64 `json:"probeAnswers"`
	// LastError is the last failure, for calibrate's error messages.
	LastError string `json:"lastError,omitempty"`
}

// Client is the traffic `podgrace probe-client` sends: Workers loops, each
// sending a GET to URL every Interval on a new connection (keep-alive off:
// through a ClusterIP every request is a new choice of endpoint, as for a
// client that reconnects; a load balancer in between keeps its own
// connections to the pods, which the probe sees as they are).
type Client struct {
	URL      string
	Workers  int
	Interval time.Duration
	Timeout  time.Duration

	requests, failures, probeAnswers atomic.Uint64
	mu                               sync.Mutex
	lastErr                          string
}

// Stats returns the counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ClientStats{Requests: c.requests.Load(), Failures: c.failures.Load(), ProbeAnswers: c.probeAnswers.Load(), LastError: c.lastErr}
}

// AdminHandler serves /stats and /readyz.
func (c *Client) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.Stats())
	})
	return mux
}

// Run sends traffic until ctx ends.
func (c *Client) Run(ctx context.Context) {
	hc := &http.Client{
		Timeout: c.Timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: c.Timeout}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var wg sync.WaitGroup
	for range max(1, c.Workers) {
		wg.Go(func() {
			tick := time.NewTicker(c.Interval)
			defer tick.Stop()
			for {
				c.once(ctx, hc)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
}

func (c *Client) once(ctx context.Context, hc *http.Client) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		c.fail(err.Error())
		return
	}
	resp, err := hc.Do(req)
	if ctx.Err() != nil {
		return
	}
	c.requests.Add(1)
	if err != nil {
		c.fail(err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		c.fail(resp.Status)
		return
	}
	if resp.Header.Get(ProbeHeader) != "" {
		c.probeAnswers.Add(1)
	}
}

func (c *Client) fail(msg string) {
	c.failures.Add(1)
	c.mu.Lock()
	c.lastErr = msg
	c.mu.Unlock()
}
