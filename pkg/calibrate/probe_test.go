package calibrate

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the probe's relative times.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = time.Unix(1_000_000, 0).Add(d)
}

// startProbe serves a probe on loopback: traffic and admin addresses.
func startProbe(t *testing.T, p *Probe, term <-chan struct{}) (traffic, admin string, done <-chan struct{}) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if err := p.Serve(ctx, tl, al, term, 5*time.Second); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return "http://" + tl.Addr().String() + "/", "http://" + al.Addr().String(), finished
}

type answer struct {
	connClose bool
	reused    bool
	pod       string
}

func get(t *testing.T, c *http.Client, url string) answer {
	t.Helper()
	var a answer
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { a.reused = i.Reused },
	}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	a.connClose = resp.Close
	a.pod = resp.Header.Get(ProbeHeader)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return a
}

func readRecords(t *testing.T, admin string, final bool) Records {
	t.Helper()
	url := admin + "/records"
	if final {
		url += "?final=true"
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var r Records
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestProbeNewAndReusedConnections: over real HTTP on loopback, a
// keep-alive connection opened before termination is recorded as reused,
// a connection opened after it as new; every answer after termination
// carries Connection: close; arrival times are relative to termination on
// the probe's clock.
func TestProbeNewAndReusedConnections(t *testing.T) {
	clk := &fakeClock{}
	clk.set(0)
	p := NewProbe("probe-a", time.Hour)
	p.now = clk.now
	term := make(chan struct{})
	traffic, admin, _ := startProbe(t, p, term)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}

	// Before termination: keep-alive, nothing recorded.
	a := get(t, c, traffic)
	if a.connClose || a.pod != "probe-a" {
		t.Fatalf("before termination: Connection: close %v, pod %q; want keep-alive from probe-a", a.connClose, a.pod)
	}
	if a = get(t, c, traffic); !a.reused {
		t.Fatal("second request before termination did not reuse the connection: the test cannot tell reused from new")
	}
	clk.set(1500 * time.Millisecond)
	if r := readRecords(t, admin, false); r.Terminating || len(r.Records) != 0 || r.Requests != 2 || r.LastRequestAgoSeconds != 1.5 {
		t.Fatalf("before termination: %+v; want not terminating, no records, 2 requests, the last 1.5s ago", r)
	}

	clk.set(10 * time.Second)
	close(term)
	waitTerminating(t, admin)

	// The open connection still reaches the probe: recorded as reused, closed by the answer.
	clk.set(12500 * time.Millisecond)
	a = get(t, c, traffic)
	if !a.reused || !a.connClose {
		t.Fatalf("first request after termination: reused %v, Connection: close %v; want the old connection, closed", a.reused, a.connClose)
	}
	// The next one needs a new connection.
	clk.set(14 * time.Second)
	a = get(t, c, traffic)
	if a.reused || !a.connClose {
		t.Fatalf("second request after termination: reused %v, Connection: close %v; want a new connection, closed", a.reused, a.connClose)
	}
	r := readRecords(t, admin, false)
	if !r.Terminating || len(r.Records) != 2 {
		t.Fatalf("after termination: %+v; want 2 records", r)
	}
	old, nw := r.Records[0], r.Records[1]
	if old.New || old.AtSeconds != 2.5 || old.ConnOpenedSeconds != -10 {
		t.Errorf("request on the old connection: %+v; want reused, at 2.5s, connection opened at -10s", old)
	}
	if !nw.New || nw.AtSeconds != 4 || nw.ConnOpenedSeconds != 4 || nw.Conn == old.Conn {
		t.Errorf("request on the new connection: %+v; want new, at 4s, opened at 4s, another connection", nw)
	}
	var tr Trial
	measure(&tr, r.Records, time.Hour)
	if tr.LastNewConnectionAfterSigtermSeconds == nil || *tr.LastNewConnectionAfterSigtermSeconds != 4 ||
		tr.NewConnectionsAfterSigterm != 1 || tr.RequestsOnReusedConnections != 1 || *tr.LastReusedAfterSigtermSeconds != 2.5 {
		t.Errorf("measured %+v; want last new connection 4s (1 new connection), 1 reused request at 2.5s", tr)
	}
}

func waitTerminating(t *testing.T, admin string) {
	t.Helper()
	for range 200 {
		if readRecords(t, admin, false).Terminating {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the probe did not start terminating")
}

// TestProbeWindow: the probe serves until the window ends, then closes its
// traffic listener, says the records are final, and returns once they were
// read with final=true.
func TestProbeWindow(t *testing.T) {
	p := NewProbe("probe-b", 300*time.Millisecond)
	term := make(chan struct{})
	traffic, admin, done := startProbe(t, p, term)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	close(term)
	waitTerminating(t, admin)
	if a := get(t, c, traffic); !a.connClose {
		t.Fatal("answer within the window without Connection: close")
	}
	<-p.Done()
	var r Records
	for range 100 {
		if r = readRecords(t, admin, false); r.WindowDone {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !r.WindowDone || len(r.Records) != 1 || !r.Records[0].New || r.Records[0].AtSeconds < 0 {
		t.Fatalf("after the window: %+v; want done, one new request at or after 0s", r)
	}
	select {
	case <-done:
		t.Fatal("the probe returned before its final records were read")
	case <-time.After(50 * time.Millisecond):
	}
	if resp, err := c.Get(traffic); err == nil {
		_ = resp.Body.Close()
		t.Error("traffic still served after the window")
	}
	readRecords(t, admin, true)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe did not return after its final records were read")
	}
}

// TestProbeFinalAnswerComplete: the /records answer that releases the probe
// arrives whole, however large, before the probe's admin server goes away
// (it was closed under the handler: a final read of a long window could
// come back cut off, and the probe was gone for the retry).
func TestProbeFinalAnswerComplete(t *testing.T) {
	for i := range 5 {
		p := NewProbe("probe-c", time.Second)
		term := make(chan struct{})
		traffic, admin, done := startProbe(t, p, term)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		close(term)
		waitTerminating(t, admin)
		sent := 0
		for ; sent < 5000; sent++ {
			resp, err := c.Get(traffic)
			if err != nil {
				break // the window ended
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		<-p.Done()
		for !readRecords(t, admin, false).WindowDone {
			time.Sleep(10 * time.Millisecond)
		}
		r := readRecords(t, admin, true) // fails on a cut-off answer
		// The last request may be recorded and then cut off by the window.
		if n := len(r.Records); n < sent || n > sent+1 || sent < 100 {
			t.Fatalf("round %d: final answer has %d records, %d requests were answered (want as many or one more, at least 100)", i, n, sent)
		}
		<-done
	}
}
