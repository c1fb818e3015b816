//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Failure kinds the load generator counts.
const (
	failRefused = "refused" // connection refused: nothing listening on the endpoint
	failReset   = "reset"   // connection reset, or closed before a response (EOF)
	failTimeout = "timeout" // no response within the client timeout
	fail5xx     = "5xx"     // a 5xx status
	failOther   = "other"   // anything else (named in the samples)
)

// loadConfig bounds a load run in count and in time.
type loadConfig struct {
	URL         string
	Workers     int           // concurrent clients
	Interval    time.Duration // pause between a worker's requests
	Timeout     time.Duration // per request
	MaxRequests int
	MaxDuration time.Duration
	// KeepAlive reuses connections (Go's net/http client as it comes: a
	// request on a connection the server closed before answering is retried
	// once by the Transport itself); false opens a new connection per request.
	KeepAlive bool
}

// loadResult counts what happened.
type loadResult struct {
	Requests int
	OK       int
	Failures map[string]int // by kind
	Versions map[string]int // first word of the successful responses
	Samples  []string       // the first failures, with the time since start
	Duration time.Duration
}

func (r loadResult) failed() int {
	n := 0
	for _, c := range r.Failures {
		n += c
	}
	return n
}

// dropped is what podgrace is meant to prevent: connections refused or reset
// because the app stopped listening while traffic still reached it.
func (r loadResult) dropped() int { return r.Failures[failRefused] + r.Failures[failReset] }

func (r loadResult) String() string {
	kinds := []string{failRefused, failReset, failTimeout, fail5xx, failOther}
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Failures[k]))
	}
	vers := make([]string, 0, len(r.Versions))
	for v, n := range r.Versions {
		vers = append(vers, fmt.Sprintf("%s:%d", v, n))
	}
	sort.Strings(vers)
	return fmt.Sprintf("requests=%d ok=%d failed=%d (%s) in %s, responses by version %s",
		r.Requests, r.OK, r.failed(), strings.Join(parts, " "), r.Duration.Round(100*time.Millisecond), strings.Join(vers, " "))
}

// checkTarget refuses any URL whose host is not a loopback address or an
// address of the e2e cluster's Service range: load never leaves the machine.
func checkTarget(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || (!ip.IsLoopback() && !serviceCIDR.Contains(ip)) {
		return fmt.Errorf("load target %s is neither loopback nor in the cluster's Service range %s", raw, serviceCIDR)
	}
	return nil
}

// runLoad sends GET requests from Workers goroutines until stop is closed,
// ctx ends, MaxRequests were sent or MaxDuration passed, whichever comes
// first: a new TCP connection for each request, or with KeepAlive one
// keep-alive client per worker (as many clients as workers, each holding
// its own connection, the way separate client processes do).
func runLoad(ctx context.Context, cfg loadConfig, stop <-chan struct{}) (loadResult, error) {
	if err := checkTarget(cfg.URL); err != nil {
		return loadResult{}, err
	}
	newClient := func() *http.Client {
		return &http.Client{
			Timeout: cfg.Timeout,
			Transport: &http.Transport{
				DisableKeepAlives: !cfg.KeepAlive,
				Proxy:             nil, // never a proxy from the environment
				DialContext:       (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
			},
		}
	}
	shared := newClient()
	res := loadResult{Failures: map[string]int{}, Versions: map[string]int{}}
	var mu sync.Mutex
	start := time.Now()
	deadline := start.Add(cfg.MaxDuration)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	sent := 0
	take := func() bool { // reserves one request of the budget
		mu.Lock()
		defer mu.Unlock()
		if sent >= cfg.MaxRequests {
			return false
		}
		sent++
		return true
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			client := shared
			if cfg.KeepAlive {
				client = newClient()
			}
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if !take() {
					return
				}
				t0 := time.Now()
				version, kind, detail := request(ctx, client, cfg.URL)
				if ctx.Err() != nil && kind != "" { // cut off by the end of the run, not a failure
					mu.Lock()
					sent--
					mu.Unlock()
					return
				}
				mu.Lock()
				res.Requests++
				if kind == "" {
					res.OK++
					res.Versions[version]++
				} else {
					res.Failures[kind]++
					if len(res.Samples) < 15 {
						res.Samples = append(res.Samples, fmt.Sprintf("t=%6.3fs %s: %s", t0.Sub(start).Seconds(), kind, detail))
					}
				}
				mu.Unlock()
				select {
				case <-time.After(cfg.Interval):
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	res.Duration = time.Since(start)
	return res, nil
}

// request does one GET and classifies the outcome ("" = success).
func request(ctx context.Context, client *http.Client, target string) (version, kind, detail string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", failOther, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", classify(err), err.Error()
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	switch {
	case err != nil:
		return "", classify(err), err.Error()
	case resp.StatusCode >= 500:
		return "", fail5xx, resp.Status
	case resp.StatusCode != http.StatusOK:
		return "", failOther, resp.Status
	}
	fields := strings.Fields(string(body))
	if len(fields) == 0 {
		return "", failOther, "empty body"
	}
	return fields[0], "", ""
}

func classify(err error) string {
	var nerr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return failTimeout
	}
	return failOther
}
