package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/selfcert"
)

// serveTLS starts podgrace's webhook server (the one `podgrace webhook`
// runs: own http.Server, limit listener, certwatcher) on a loopback port
// with a fresh certificate, serving the handler at Path behind the
// in-flight limit, as NewServer wires it. It returns the address.
func serveTLS(t *testing.T, limits Limits, h *Handler) string {
	t.Helper()
	limits = limits.withDefaults()
	if err := limits.validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := selfcert.NewCA("podgrace-test", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tls.crt": kp.CertPEM, "tls.key": kp.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := newWebhookServer(ctrlwebhook.Options{Host: "127.0.0.1", CertDir: dir, TLSOpts: []func(*tls.Config){secureTLS}}, limits, logr.Discard())
	h.bodies = &bodyBudget{limit: limits.MaxBodyMemory}
	s.Register(Path, limitInFlight(limits.MaxInFlight)(h))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for range 500 {
		if s.StartedChecker()(nil) == nil {
			return *s.addr.Load()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the webhook server did not start")
	return ""
}

func dialTLS(addr string) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own server
}

// postReview sends a real AdmissionReview on a fresh connection.
func postReview(t *testing.T, addr string, body []byte) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test's own server
	defer c.CloseIdleConnections()
	resp, err := c.Post("https://"+addr+Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// TestHeaderOnlyAttack reproduces issue 23's finding 1 against the real HTTPS
// server: 40 connections each send only headers declaring a 7 MiB body. The
// server used to size a buffer from Content-Length before a byte arrived
// (40 × 7 MiB, past the chart's 256Mi memory limit); now the heap grows by
// what was sent, the read deadline closes each connection, and a real pod
// is still mutated meanwhile.
func TestHeaderOnlyAttack(t *testing.T) {
	const conns = 40
	addr := serveTLS(t, Limits{ReadTimeout: 2 * time.Second}, newTestHandler(ptr(policy.Default()), nil))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc

	header := "POST " + Path + " HTTP/1.1\r\nHost: podgrace\r\nContent-Type: application/json\r\nContent-Length: 7340032\r\n\r\n{"
	var open []*tls.Conn
	for range conns {
		c, err := dialTLS(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		if _, err := io.WriteString(c, header); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	// The handlers are now blocked reading bodies that never come.
	var peak uint64
	for range 20 {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
		time.Sleep(25 * time.Millisecond)
	}
	growth := int64(peak) - int64(base)
	t.Logf("heap grew by %d KiB with %d header-only connections", growth>>10, conns)
	// The chart's limit is 256Mi; the old code grew by 280 MiB here.
	if growth > 32<<20 {
		t.Errorf("heap grew by %d MiB with %d header-only connections: bodies are sized from Content-Length", growth>>20, conns)
	}

	// A real admission is answered meanwhile.
	if code, body := postReview(t, addr, reviewFor(t, testPod(), nil)); code != http.StatusOK || !bytes.Contains(body, []byte(`"patch"`)) {
		t.Errorf("a real review under the attack: %d %s", code, body)
	}

	// The read deadline ends every attack connection.
	var wg sync.WaitGroup
	for _, c := range open {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.ReadAll(c)
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				t.Error("an attack connection is still open 30s later: no read deadline")
			}
		})
	}
	wg.Wait()
}

// TestConnectionLimit: connections over MaxConnections are closed as soon as
// they are accepted, and counted; the ones under it are served.
func TestConnectionLimit(t *testing.T) {
	addr := serveTLS(t, Limits{MaxConnections: 4}, newTestHandler(ptr(policy.Default()), nil))
	before := testutil.ToFloat64(connectionsRejectedTotal)
	var held []*tls.Conn
	for range 4 {
		c, err := dialTLS(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		held = append(held, c)
	}
	if c, err := dialTLS(addr); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		_ = c.Close()
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatal("a connection over the limit was kept open")
		}
	}
	if got := testutil.ToFloat64(connectionsRejectedTotal) - before; got < 1 {
		t.Errorf("podgrace_connections_rejected_total rose by %v, want ≥ 1", got)
	}
	_ = held[0].Close()
	// Once one is closed, new connections are served again.
	var code int
	for range 100 {
		if code, _ = postReviewNoFatal(addr, reviewFor(t, testPod(), nil)); code == http.StatusOK {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Errorf("after a connection closed: %d", code)
	}
}

func postReviewNoFatal(addr string, body []byte) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test's own server
	defer c.CloseIdleConnections()
	resp, err := c.Post("https://"+addr+Path, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// TestBodyMemoryLimit: bodies held over MaxBodyMemory get a 503 at once
// (a failure the API server handles by failurePolicy), counted as
// overloaded; the memory is released after each answer.
func TestBodyMemoryLimit(t *testing.T) {
	h := newTestHandler(ptr(policy.Default()), nil)
	addr := serveTLS(t, Limits{MaxBodyMemory: 10 << 20}, h)
	before := testutil.ToFloat64(notHandledTotal.WithLabelValues(reasonOverloaded))
	// Hold most of the budget with a slow body on one connection.
	c, err := dialTLS(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := io.WriteString(c, "POST "+Path+" HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 7000000\r\n\r\n"+strings.Repeat(" ", 5<<20)); err != nil {
		t.Fatal(err)
	}
	var code int
	for range 100 {
		code, _ = postReview(t, addr, reviewFor(t, padded(3<<20), nil))
		if code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("a 3 MiB review with 5 MiB held against a 10 MiB budget: %d, want 503", code)
	}
	if got := testutil.ToFloat64(notHandledTotal.WithLabelValues(reasonOverloaded)) - before; got < 1 {
		t.Errorf("overloaded count rose by %v", got)
	}
	_ = c.Close()
	for range 100 {
		if code, _ = postReview(t, addr, reviewFor(t, padded(3<<20), nil)); code == http.StatusOK {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Errorf("after the slow body's connection closed: %d", code)
	}
	if used := h.bodies.used.Load(); used != 0 {
		t.Errorf("%d bytes still reserved with nothing in flight", used)
	}
}

// padded is the test pod with an annotation of n bytes.
func padded(n int) any {
	p := testPod()
	p.Annotations = map[string]string{"pad": strings.Repeat("x", n)}
	return p
}

// TestInFlightLimit: admissions over MaxInFlight are answered 503 at once.
func TestInFlightLimit(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := limitInFlight(2)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-block
		w.WriteHeader(http.StatusOK)
	}))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			rec := newRecorder()
			h.ServeHTTP(rec, httpReq(t))
		})
	}
	<-entered
	<-entered
	rec := newRecorder()
	h.ServeHTTP(rec, httpReq(t))
	close(block)
	wg.Wait()
	if rec.code != http.StatusServiceUnavailable {
		t.Fatalf("third admission with 2 in flight: %d, want 503", rec.code)
	}
	var st struct{ Message string }
	if err := json.Unmarshal(rec.body.Bytes(), &st); err != nil || !strings.Contains(st.Message, "failurePolicy") {
		t.Errorf("503 body %s (%v)", rec.body.Bytes(), err)
	}
}

// TestDeadlineAnswersFailure: an admission whose deadline passed during a
// wait (a namespace read that outlived it; an image lookup, which runs under
// a context with the deadline) is answered with an HTTP error (the API
// server applies failurePolicy), not a patch.
func TestDeadlineAnswersFailure(t *testing.T) {
	t.Parallel()
	const timeout = 50 * time.Millisecond
	imagePod := testPod()
	imagePod.Spec.Containers[0].Command = nil // its argv comes from the image
	cases := map[string]struct {
		pod     *corev1.Pod
		handler func(*Handler)
	}{
		"namespace read": {testPod(), func(h *Handler) {
			h.Namespaces = func(context.Context, string) (map[string]string, error) {
				time.Sleep(2 * timeout) // a live read that outlives the admission
				return nil, nil
			}
		}},
		"image lookup": {imagePod, func(h *Handler) {
			h.Images = func(ctx context.Context, _ *corev1.Pod, _ []string) map[string]inject.ImageInfo {
				if _, ok := ctx.Deadline(); !ok {
					t.Error("the image lookup's context has no deadline")
				}
				<-ctx.Done() // a registry that never answers
				return nil
			}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newTestHandler(ptr(policy.Default()), nil)
			tc.handler(h)
			h.Timeout = timeout
			rec := newRecorder()
			r := httpReq(t)
			r.Body = io.NopCloser(bytes.NewReader(reviewFor(t, tc.pod, nil)))
			h.ServeHTTP(rec, r)
			if rec.code != http.StatusServiceUnavailable || bytes.Contains(rec.body.Bytes(), []byte("patch")) {
				t.Fatalf("past the deadline: %d %s", rec.code, rec.body.Bytes())
			}
			var rev admissionv1.AdmissionReview
			if json.Unmarshal(rec.body.Bytes(), &rev) == nil && rev.Response != nil {
				t.Fatalf("an AdmissionReview was answered past the deadline: %s", rec.body.Bytes())
			}
		})
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}, code: http.StatusOK} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func httpReq(t *testing.T) *http.Request {
	r, err := http.NewRequest(http.MethodPost, Path, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}
