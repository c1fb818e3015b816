// Command loadgen replays AdmissionReview bodies against a running webhook
// (`podgrace webhook`, or test/bench/floorserver) the way the API server
// calls it: HTTPS POSTs over keep-alive HTTP/1.1 connections. It prints the
// throughput and the latency percentiles (p50, p90, p99, p99.9).
//
// It only sends to loopback addresses: it is a tool to measure a webhook on
// the machine it runs on, never a way to load someone else's server.
//
//	go run ./hack/loadgen -url https://127.0.0.1:9443/mutate-v1-pod \
//	    -cacert ca.crt -c 8 -rate 1000 -duration 10s \
//	    test/bench/testdata/reviews/typical.json
//
// Without -rate it runs closed-loop: each of the -c connections sends its
// next request as soon as the previous one is answered (the throughput
// ceiling). With -rate it runs open-loop: requests are scheduled at a fixed
// rate and a request's latency counts from when it was due, so a server that
// falls behind is charged for the queueing it causes (no coordinated
// omission). It stops at -duration or after -n requests, whichever comes
// first.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

type options struct {
	url         string
	bodies      [][]byte
	concurrency int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	maxRequests int
	timeout     time.Duration
	caFile      string
	insecure    bool
	jsonOut     bool
}

// Result is what a run measured; -json prints it as one line.
type Result struct {
	URL         string  `json:"url"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`     // 0: closed loop
	Requests    int     `json:"requests"` // measured: sent after the warm-up
	Answered    int     `json:"answered"` // all requests answered, warm-up included
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	Throughput  float64 `json:"throughput"` // successful admissions per second
	// Latencies in milliseconds.
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	// FirstError is the first failure seen, if any.
	FirstError string `json:"first_error,omitempty"`
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	res, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if o.jsonOut {
		_ = json.NewEncoder(os.Stdout).Encode(res)
	} else {
		printText(os.Stdout, res)
	}
	if res.Errors > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d of %d requests failed; first: %s\n", res.Errors, res.Requests, res.FirstError)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.url, "url", "https://127.0.0.1:9443/mutate-v1-pod", "webhook URL; its host must be a loopback address or localhost")
	fs.IntVar(&o.concurrency, "c", 8, "keep-alive connections, each with one request in flight")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second (open loop); 0 sends as fast as the server answers (closed loop)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to measure (at most 10m)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "how long to send, unmeasured, before measuring (connections, caches, GC pacing)")
	fs.IntVar(&o.maxRequests, "n", 1_000_000, "stop after this many measured requests (at most 10,000,000)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout (the API server's webhook timeout)")
	fs.StringVar(&o.caFile, "cacert", "", "PEM file of the CA that signs the webhook's certificate")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the webhook's certificate")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON line")
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), "Usage: loadgen [flags] REVIEW.json...\n\nReplays AdmissionReview bodies over HTTPS keep-alive HTTP/1.1 connections to a webhook on this machine.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() == 0:
		return nil, errors.New("no AdmissionReview body files given")
	case o.concurrency < 1 || o.concurrency > 1024:
		return nil, fmt.Errorf("-c %d: want 1..1024", o.concurrency)
	case o.rate < 0 || o.rate > 1e6:
		return nil, fmt.Errorf("-rate %v: want 0..1e6", o.rate)
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return nil, fmt.Errorf("-duration %v: want (0, 10m]", o.duration)
	case o.warmup < 0 || o.warmup > time.Minute:
		return nil, fmt.Errorf("-warmup %v: want [0, 1m]", o.warmup)
	case o.maxRequests < 1 || o.maxRequests > 10_000_000:
		return nil, fmt.Errorf("-n %d: want 1..10,000,000", o.maxRequests)
	case o.caFile == "" && !o.insecure:
		return nil, errors.New("give -cacert, or -insecure to skip verifying the certificate")
	}
	if err := checkLoopback(o.url); err != nil {
		return nil, err
	}
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		o.bodies = append(o.bodies, b)
	}
	return o, nil
}

// checkLoopback refuses any URL whose host is not a loopback address: an IP
// literal in 127.0.0.0/8 or ::1, or a name that resolves only to those.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" {
		return fmt.Errorf("%s: only https URLs (the API server calls webhooks over TLS)", raw)
	}
	host := u.Hostname()
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.LookupIP(host)
		if err != nil {
			return fmt.Errorf("%s: %w", host, err)
		}
		ips = addrs
	}
	if len(ips) == 0 {
		return fmt.Errorf("%s resolves to no address", host)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("refusing %s: %s is not a loopback address; loadgen only sends to this machine", raw, ip)
		}
	}
	return nil
}

// newClient keeps one HTTP/1.1 connection per worker, like the API server's
// webhook client (HTTP/2 is off, as podgrace serves HTTP/1.1 only), and only
// ever dials loopback.
func newClient(o *options) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure} //nolint:gosec // -insecure is the user's explicit choice
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", o.caFile)
		}
		tc.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if ra, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ra.IP.IsLoopback() {
				_ = c.Close()
				return nil, fmt.Errorf("refusing to talk to %v: not loopback", c.RemoteAddr())
			}
			return c, nil
		},
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
		MaxIdleConns:        o.concurrency,
		MaxIdleConnsPerHost: o.concurrency,
		MaxConnsPerHost:     o.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: o.timeout}, nil
}

// worker state: each records its own latencies.
type recorder struct {
	lat      []time.Duration
	errors   int
	firstErr string
}

func run(ctx context.Context, o *options) (*Result, error) {
	client, err := newClient(o)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()

	// One POST checks the target before any load.
	if err := send(ctx, client, o.url, o.bodies[0]); err != nil {
		return nil, fmt.Errorf("first request: %w", err)
	}

	var (
		measuring atomic.Bool
		measured  atomic.Int64
		answered  atomic.Int64
		next      atomic.Uint64
	)
	runCtx, stop := context.WithTimeout(ctx, o.warmup+o.duration)
	defer stop()
	// due carries, in open loop, when each request was due.
	var due chan time.Time
	if o.rate > 0 {
		due = make(chan time.Time, 4096)
		go schedule(runCtx, o.rate, due)
	}

	recs := make([]*recorder, o.concurrency)
	var wg sync.WaitGroup
	for i := range recs {
		r := &recorder{lat: make([]time.Duration, 0, 1024)}
		recs[i] = r
		wg.Go(func() {
			for {
				var start time.Time
				if due != nil {
					select {
					case <-runCtx.Done():
						return
					case start = <-due:
					}
				} else {
					if runCtx.Err() != nil {
						return
					}
					start = time.Now()
				}
				body := o.bodies[int(next.Add(1)%uint64(len(o.bodies)))]
				err := send(runCtx, client, o.url, body)
				d := time.Since(start)
				if err == nil {
					answered.Add(1)
				}
				if !measuring.Load() {
					continue
				}
				if runCtx.Err() != nil && err != nil {
					return // cut off by the end of the run: not a failure
				}
				if measured.Add(1) > int64(o.maxRequests) {
					stop()
					return
				}
				if err != nil {
					if r.errors == 0 {
						r.firstErr = err.Error()
					}
					r.errors++
					continue
				}
				r.lat = append(r.lat, d)
			}
		})
	}
	select {
	case <-time.After(o.warmup):
	case <-runCtx.Done():
	}
	measuring.Store(true)
	begin := time.Now()
	<-runCtx.Done()
	elapsed := time.Since(begin)
	wg.Wait()

	res := &Result{URL: o.url, Concurrency: o.concurrency, Rate: o.rate, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for _, r := range recs {
		all = append(all, r.lat...)
		res.Errors += r.errors
		if res.FirstError == "" {
			res.FirstError = r.firstErr
		}
	}
	res.Requests = len(all) + res.Errors
	res.Answered = int(answered.Load()) + 1 // and the first, checking request
	if len(all) == 0 {
		return res, errors.New("no request succeeded while measuring")
	}
	slices.Sort(all)
	ms := func(q float64) float64 {
		i := min(len(all)-1, int(q*float64(len(all))))
		return float64(all[i]) / float64(time.Millisecond)
	}
	res.Throughput = float64(len(all)) / elapsed.Seconds()
	res.P50, res.P90, res.P99, res.P999 = ms(0.50), ms(0.90), ms(0.99), ms(0.999)
	res.Max = float64(all[len(all)-1]) / float64(time.Millisecond)
	return res, nil
}

// schedule sends the due time of each request at rate per second until ctx
// ends. When every worker is busy the channel fills and the backlog keeps its
// due times, so the queueing shows in the latencies.
func schedule(ctx context.Context, rate float64, due chan<- time.Time) {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			// Everything due by now, in order, each with its own due time.
			for n := int64(now.Sub(start) / interval); sent < n; sent++ {
				select {
				case due <- start.Add(time.Duration(sent) * interval):
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

var allowed = []byte(`"allowed":true`)

// send POSTs one review and checks that it was answered with an allowed
// AdmissionReview (HTTP 200).
func send(ctx context.Context, c *http.Client, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+"?timeout=5s", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	if !bytes.Contains(b, allowed) {
		return fmt.Errorf("not an allowed AdmissionReview: %.200s", b)
	}
	return nil
}

func printText(w io.Writer, r *Result) {
	mode := "closed loop"
	if r.Rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f/s", r.Rate)
	}
	_, _ = fmt.Fprintf(w, "%s, %d connections, %s\n"+
		"requests    %d in %.2fs (%d failed)\n"+
		"throughput  %.0f admissions/s\n"+
		"latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
		r.URL, r.Concurrency, mode, r.Requests, r.Seconds, r.Errors, r.Throughput, r.P50, r.P90, r.P99, r.P999, r.Max)
}
