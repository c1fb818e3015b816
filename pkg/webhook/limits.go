package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Limits bound what one replica gives callers of the webhook port
// (docs/operate/security.md). Every limit hit is answered at once with a failure the
// API server handles by the webhook's failurePolicy, counted in
// podgrace_requests_not_handled_total{reason="overloaded"} or
// podgrace_connections_rejected_total, and alerted (PodgraceOverloaded).
// The defaults sit far above a 5,000-pod storm from 50 clients against two
// replicas (docs/design.md §7).
type Limits struct {
	// MaxConnections caps open connections to the webhook port; one over
	// it is closed as soon as it is accepted.
	MaxConnections int
	// MaxInFlight caps admissions being read or decided at once; one over
	// it gets a 503.
	MaxInFlight int
	// MaxBodyMemory caps the bytes of request bodies held at once, all
	// requests together: a request whose body would take the total over it
	// gets a 503. Bodies are read as they arrive, never sized from the
	// client's Content-Length.
	MaxBodyMemory int64
	// ReadTimeout bounds reading a request, headers and body.
	ReadTimeout time.Duration
}

// Defaults of Limits (the `podgrace webhook` flags).
const (
	DefaultMaxConnections = 1024
	DefaultMaxInFlight    = 256
	// DefaultMaxBodyMemory: decoding and answering the bodies held takes
	// several times them; with 12 MiB a replica peaks near 130 MiB under
	// TestWebhookProcessMemory's attack (261 MiB with 48), about half the
	// chart's 256Mi limit; a storm of ordinary pods holds well under 1 MiB.
	DefaultMaxBodyMemory = 12 << 20
	DefaultReadTimeout   = 10 * time.Second
	// idleTimeout closes keep-alive connections idle this long.
	idleTimeout = 90 * time.Second
	// minBodyMemory holds one review of MaxBodyBytes, with the buffer's
	// growth (readBody doubles it).
	minBodyMemory = 8 << 20
	// maxHeaderBytes bounds a request's headers (net/http's default is 1 MiB).
	maxHeaderBytes = 64 << 10
)

func (l *Limits) withDefaults() Limits {
	out := *l
	if out.MaxConnections == 0 {
		out.MaxConnections = DefaultMaxConnections
	}
	if out.MaxInFlight == 0 {
		out.MaxInFlight = DefaultMaxInFlight
	}
	if out.MaxBodyMemory == 0 {
		out.MaxBodyMemory = DefaultMaxBodyMemory
	}
	if out.ReadTimeout == 0 {
		out.ReadTimeout = DefaultReadTimeout
	}
	return out
}

func (l *Limits) validate() error {
	switch {
	case l.MaxConnections < 1 || l.MaxInFlight < 1:
		return fmt.Errorf("webhook: max connections %d and max in-flight %d must be at least 1", l.MaxConnections, l.MaxInFlight)
	case l.MaxBodyMemory < minBodyMemory:
		return fmt.Errorf("webhook: max body memory %d is below what one largest review takes (%d bytes)", l.MaxBodyMemory, minBodyMemory)
	case l.ReadTimeout < time.Second:
		return fmt.Errorf("webhook: read timeout %v is under 1s", l.ReadTimeout)
	}
	return nil
}

var connectionsRejectedTotal = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "podgrace_connections_rejected_total",
	Help: "Connections to the webhook port closed on accept because the connection limit (--max-connections) was reached.",
})

func init() { register(connectionsRejectedTotal) }

// bodyBudget is the byte budget request bodies share (Limits.MaxBodyMemory).
type bodyBudget struct {
	limit int64
	used  atomic.Int64
}

func (b *bodyBudget) reserve(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// errBudget: reading the body would take the bodies held over the budget.
var errBudget = errors.New("request bodies in flight over the memory limit")

// readBody reads r into buf as it arrives, growing buf from what was read,
// never from the declared Content-Length: a client that declares 7 MiB and
// sends nothing costs nothing. All of buf's capacity, pooled or grown, is
// reserved from budget first; it returns what it reserved, for the caller
// to release once the request is answered.
func readBody(buf *bytes.Buffer, r io.Reader, budget *bodyBudget) (reserved int64, err error) {
	const chunk = 32 << 10
	reserved = int64(buf.Cap())
	if !budget.reserve(reserved) {
		return 0, errBudget
	}
	for {
		if buf.Available() < chunk/2 {
			// bytes.Buffer grows to at most 2·cap + n: reserve that, keep
			// what it took.
			upTo := int64(2*buf.Cap() + chunk)
			if !budget.reserve(upTo - reserved) {
				return reserved, errBudget
			}
			buf.Grow(chunk)
			budget.release(upTo - int64(buf.Cap()))
			reserved = int64(buf.Cap())
		}
		b := buf.AvailableBuffer()
		n, err := r.Read(b[:cap(b)])
		buf.Write(b[:n])
		if err == io.EOF {
			return reserved, nil
		}
		if err != nil {
			return reserved, err
		}
	}
}

// limitInFlight answers 503 at once to a request over max in flight; the
// handlers it wraps share the max.
func limitInFlight(limit int) func(http.Handler) http.Handler {
	slots := make(chan struct{}, limit)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case slots <- struct{}{}:
			default:
				notHandledTotal.WithLabelValues(reasonOverloaded).Inc()
				writeError(w, overloaded(fmt.Sprintf("over %d admissions in flight", limit)))
				return
			}
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		})
	}
}

func overloaded(msg string) *requestError {
	return &requestError{code: http.StatusServiceUnavailable, reason: reasonOverloaded, msg: "overloaded: " + msg + "; the API server applies the webhook's failurePolicy"}
}

// limitListener closes connections over max as soon as they are accepted
// (golang.org/x/net/netutil.LimitListener would hold them in the backlog,
// the API server waiting until its timeout instead of failing fast).
type limitListener struct {
	net.Listener
	max    int64
	active atomic.Int64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			connectionsRejectedTotal.Inc()
			_ = c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}

// webhookServer is podgrace's webhook server: controller-runtime's
// DefaultServer for registration (its mux wraps each handler in the request
// metrics the chart's alerts read: controller_runtime_webhook_requests_total,
// _latency_seconds, _requests_in_flight), served by podgrace's own
// http.Server, because controller-runtime v0.24's offers no read timeout and
// no connection limit (docs/design.md §7). The certificate is reloaded on
// rotation by controller-runtime's certwatcher, as DefaultServer does.
type webhookServer struct {
	ctrlwebhook.Server
	opts    ctrlwebhook.Options
	limits  Limits
	log     logr.Logger
	started atomic.Bool
	// addr is the listener's address once serving (tests use port 0).
	addr atomic.Pointer[string]
}

func newWebhookServer(o ctrlwebhook.Options, limits Limits, log logr.Logger) *webhookServer {
	if o.CertName == "" {
		o.CertName = "tls.crt"
	}
	if o.KeyName == "" {
		o.KeyName = "tls.key"
	}
	return &webhookServer{Server: ctrlwebhook.NewServer(o), opts: o, limits: limits, log: log}
}

// Start serves until ctx ends, then shuts down, letting in-flight requests finish.
func (s *webhookServer) Start(ctx context.Context) error {
	cfg := &tls.Config{} //nolint:gosec // secureTLS sets the minimum version
	for _, op := range s.opts.TLSOpts {
		op(cfg)
	}
	cw, err := certwatcher.New(filepath.Join(s.opts.CertDir, s.opts.CertName), filepath.Join(s.opts.CertDir, s.opts.KeyName))
	if err != nil {
		return err
	}
	cfg.GetCertificate = cw.GetCertificate
	go func() {
		if err := cw.Start(ctx); err != nil {
			s.log.Error(err, "Certificate watcher")
		}
	}()
	ln, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)))
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	s.addr.Store(&addr)
	ll := &limitListener{Listener: ln, max: int64(s.limits.MaxConnections)}
	srv := &http.Server{
		Handler:           s.WebhookMux(),
		ReadHeaderTimeout: s.limits.ReadTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         cfg,
	}
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Error(err, "Shutting down the webhook server")
		}
		close(closed)
	}()
	s.log.Info("Serving webhook", "address", addr, "maxConnections", s.limits.MaxConnections,
		"maxInFlight", s.limits.MaxInFlight, "maxBodyMemory", s.limits.MaxBodyMemory, "readTimeout", s.limits.ReadTimeout)
	s.started.Store(true)
	if err := srv.Serve(tls.NewListener(ll, cfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-closed
	return nil
}

// StartedChecker is ready once the listener completes a TLS handshake.
func (s *webhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		addr := s.addr.Load()
		if !s.started.Load() || addr == nil {
			return errors.New("webhook server has not been started yet")
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", *addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a liveness dial of our own listener
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}
