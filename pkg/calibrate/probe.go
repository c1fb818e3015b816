package calibrate

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Ports of the probe and the client. Traffic reaches the probe on
// ProbePort (the Service's target); calibrate reads records and stats on
// AdminPort through the API server's pods/proxy subresource, so that its
// own requests never count as traffic.
const (
	ProbePort = 8080
	AdminPort = 8081
)

// ProbeHeader names the probe pod in each answer, so that the client can
// tell that a --url reaches the probe Service.
const ProbeHeader = "X-Podgrace-Probe"

// maxRecords bounds what a probe keeps after its termination started: a
// window of 10 minutes at 150 requests a second.
const maxRecords = 100_000

// Record is one request a terminating probe received, on its own clock.
type Record struct {
	// AtSeconds is the arrival, relative to the start of termination.
	AtSeconds float64 `json:"at"`
	// Conn numbers the connection; ConnOpenedSeconds is when it was
	// accepted, relative to the start of termination (negative: before it).
	Conn              uint64  `json:"conn"`
	ConnOpenedSeconds float64 `json:"connOpened"`
	// New is true when the connection was opened after termination started.
	New bool `json:"new"`
}

// Records is what the admin endpoint /records returns.
type Records struct {
	Pod string `json:"pod"`
	// Terminating says whether termination started; SinceSeconds is how long
	// ago, at the moment the answer was written.
	Terminating  bool    `json:"terminating"`
	SinceSeconds float64 `json:"since"`
	// WindowDone is true once the window ended: the traffic listener is
	// closed and Records is final.
	WindowDone bool `json:"windowDone"`
	// LastRequestAgoSeconds is how long ago the last request arrived (-1:
	// none yet): calibrate's "the path reaches this pod" check. (Not the
	// last new connection: a proxy's keep-alive pool may open none for long.)
	LastRequestAgoSeconds float64 `json:"lastRequestAgo"`
	// Requests counts every request served; Dropped the records beyond the bound.
	Requests uint64   `json:"requests"`
	Dropped  int      `json:"dropped"`
	Records  []Record `json:"records"`
}

// Probe is the server `podgrace probe` runs. Terminate marks the moment
// termination starts; from then on every answer carries Connection: close
// and every request is recorded relative to that moment, with whether its
// connection was opened before or after it. Traffic is served until the
// window has passed.
type Probe struct {
	Pod    string
	Window time.Duration
	// now is the clock (monotonic readings of time.Now).
	now func() time.Time

	mu      sync.Mutex
	termAt  time.Time
	records []Record
	dropped int
	lastReq time.Time

	requests atomic.Uint64
	connSeq  atomic.Uint64
	done     chan struct{} // closed when the window ends
	doneOnce sync.Once
	final    chan struct{} // closed when calibrate took the final records
	finOnce  sync.Once
}

// NewProbe returns a probe for pod name that serves for window after Terminate.
func NewProbe(pod string, window time.Duration) *Probe {
	return &Probe{Pod: pod, Window: window, now: time.Now, done: make(chan struct{}), final: make(chan struct{})}
}

type connKey struct{}

type connInfo struct {
	id     uint64
	opened time.Time
	reqs   atomic.Uint64
}

// ConnContext is the traffic server's http.Server.ConnContext: it numbers
// each accepted connection and notes when it was opened.
func (p *Probe) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connInfo{id: p.connSeq.Add(1), opened: p.now()})
}

// Terminate marks the start of termination (idempotent) and ends the
// window after Window.
func (p *Probe) Terminate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.termAt.IsZero() {
		return
	}
	p.termAt = p.now()
	time.AfterFunc(p.Window, func() { p.doneOnce.Do(func() { close(p.done) }) })
}

// Done is closed when the window has ended.
func (p *Probe) Done() <-chan struct{} { return p.done }

// Final is closed when calibrate has read the final records.
func (p *Probe) Final() <-chan struct{} { return p.final }

// ServeHTTP answers traffic: 200 with the pod's name.
func (p *Probe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := p.now()
	p.requests.Add(1)
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	p.mu.Lock()
	p.lastReq = now
	term := p.termAt
	if !term.IsZero() && ci != nil {
		ci.reqs.Add(1)
		if len(p.records) < maxRecords {
			p.records = append(p.records, Record{
				AtSeconds: secs(now.Sub(term)), Conn: ci.id,
				ConnOpenedSeconds: secs(ci.opened.Sub(term)), New: !ci.opened.Before(term),
			})
		} else {
			p.dropped++
		}
	}
	p.mu.Unlock()
	if !term.IsZero() {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set(ProbeHeader, p.Pod)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("podgrace probe " + p.Pod + "\n"))
}

// Snapshot is the current state, as /records returns it.
func (p *Probe) Snapshot() Records {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := Records{Pod: p.Pod, Requests: p.requests.Load(), Dropped: p.dropped, LastRequestAgoSeconds: -1}
	if !p.lastReq.IsZero() {
		out.LastRequestAgoSeconds = secs(now.Sub(p.lastReq))
	}
	if !p.termAt.IsZero() {
		out.Terminating, out.SinceSeconds = true, secs(now.Sub(p.termAt))
		out.Records = append([]Record(nil), p.records...)
	}
	select {
	case <-p.done:
		out.WindowDone = true
	default:
	}
	return out
}

// AdminHandler serves /readyz (200 until the window ends) and /records
// (?final=true once the window is done also lets the probe exit).
func (p *Probe) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /records", func(w http.ResponseWriter, r *http.Request) {
		s := p.Snapshot()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
		if s.WindowDone && r.URL.Query().Get("final") == "true" {
			p.finOnce.Do(func() { close(p.final) })
		}
	})
	return mux
}

// ProbeServers returns the traffic and admin servers of a probe.
func (p *Probe) ProbeServers(trafficAddr, adminAddr string) (traffic, admin *http.Server) {
	traffic = &http.Server{Addr: trafficAddr, Handler: p, ConnContext: p.ConnContext,
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	admin = &http.Server{Addr: adminAddr, Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	return traffic, admin
}

// Serve runs the probe until ctx ends: it serves traffic and admin on the
// given listeners; terminate delivers the start of termination (SIGTERM).
// After the window it closes the traffic listener and waits for calibrate
// to read the final records, at most hold, then returns.
func (p *Probe) Serve(ctx context.Context, traffic, admin net.Listener, terminate <-chan struct{}, hold time.Duration) error {
	ts, as := p.ProbeServers("", "")
	errc := make(chan error, 2)
	go func() { errc <- ts.Serve(traffic) }()
	go func() { errc <- as.Serve(admin) }()
	// Shutdown, not Close: the /records answer that released the probe is
	// still being written when Final is closed.
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = as.Shutdown(sctx)
	}()
	select {
	case <-terminate:
	case <-ctx.Done():
		_ = ts.Close()
		return nil
	case err := <-errc:
		return err
	}
	p.Terminate()
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	_ = ts.Close()
	select {
	case <-p.final:
	case <-time.After(hold):
	case <-ctx.Done():
	}
	return nil
}
