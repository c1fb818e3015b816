package main

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podgrace/podgrace/test/bench/baseline"
)

func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	for url, ok := range map[string]bool{
		"https://127.0.0.1:9443/mutate-v1-pod": true,
		"https://127.0.0.9/x":                  true,
		"https://[::1]:9443/x":                 true,
		"https://localhost:9443/x":             true,
		"http://127.0.0.1:9443/x":              false, // not TLS
		"https://192.0.2.10:9443/x":            false,
		"https://[2001:db8::1]/x":              false,
		"https://0.0.0.0:9443/x":               false,
	} {
		if err := checkLoopback(url); (err == nil) != ok {
			t.Errorf("checkLoopback(%s) = %v, want ok %v", url, err, ok)
		}
	}
}

func TestFlagsBound(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-insecure"}, // no body
		{"-insecure", "-c", "0", "x.json"},
		{"-insecure", "-duration", "1h", "x.json"},
		{"-insecure", "-n", "0", "x.json"},
		{"x.json"}, // neither -cacert nor -insecure
		{"-insecure", "-url", "https://192.0.2.10/x", "x.json"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// TestRun replays a bench review against the floor, closed and open loop.
func TestRun(t *testing.T) {
	srv := httptest.NewTLSServer(baseline.Floor{})
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile("../../test/bench/testdata/reviews/small.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, rate := range []float64{0, 200} {
		o := &options{
			url: srv.URL + "/mutate-v1-pod", bodies: [][]byte{body}, concurrency: 2, rate: rate,
			duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond, maxRequests: 100_000,
			timeout: 5 * time.Second, caFile: ca,
		}
		res, err := run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors > 0 || res.Requests == 0 || res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
			t.Errorf("rate %v: %+v", rate, res)
		}
		if rate > 0 && res.Requests > int(rate) { // 0.3 s at 200/s is about 60
			t.Errorf("rate %v: %d requests in %.2fs", rate, res.Requests, res.Seconds)
		}
	}
	o := &options{url: srv.URL + "/x", bodies: [][]byte{body}, concurrency: 1, duration: time.Second, maxRequests: 25, timeout: time.Second, caFile: ca}
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 25 {
		t.Errorf("-n 25 sent %d measured requests", res.Requests)
	}
}
