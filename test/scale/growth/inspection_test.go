//go:build scale

package growth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/internal/imagetest"
	"github.com/podgrace/podgrace/pkg/policy"
)

// hostIP is a non-loopback IPv4 address of this machine. A deployed
// podgrace refuses loopback registries and no flag turns that off, so the
// registries the real binary reads listen here; the traffic stays on the
// machine.
func hostIP(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	t.Fatal("no non-loopback IPv4 address on this machine: the real podgrace binary refuses loopback registries")
	return ""
}

// store is go-containerregistry's in-memory registry with the suite's
// images, pushed through a loopback listener nobody counts.
type store struct {
	handler http.Handler
	push    *httptest.Server
}

func newStore(t *testing.T) *store {
	t.Helper()
	s := &store{handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	s.push = httptest.NewServer(s.handler)
	t.Cleanup(s.push.Close)
	return s
}

// pushShellForm pushes n images app-NNN:1, each with a shell-form CMD.
func (s *store) pushShellForm(t *testing.T, n int) {
	t.Helper()
	host := strings.TrimPrefix(s.push.URL, "http://")
	var g errgroup.Group
	g.SetLimit(8)
	for k := range n {
		g.Go(func() error {
			img := imagetest.Build(t, imagetest.Image{Cmd: []string{"/bin/sh", "-c", fmt.Sprintf("/app --id %d", k)}})
			ref, err := name.ParseReference(fmt.Sprintf("%s/app-%05d:1", host, k), name.Insecure)
			if err != nil {
				return err
			}
			return remote.Write(ref, img)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// endpoint is one registry address podgrace reads: the store behind an
// added latency, or a listener that never answers.
type endpoint struct {
	host    string // ip:port
	latency time.Duration
	hang    bool

	conns    atomic.Int64
	mu       sync.Mutex
	requests map[string]int // "METHOD path" → count
}

func (e *endpoint) count(method, path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests[method+" "+path]++
}

// counts returns the requests so far: pings (GET /v2/), and per image
// repository the manifest and blob requests.
func (e *endpoint) counts() (pings int, manifests, blobs map[string]int, total int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	manifests, blobs = map[string]int{}, map[string]int{}
	for k, n := range e.requests {
		total += n
		_, path, _ := strings.Cut(k, " ")
		if path == "/v2/" || path == "/v2" {
			pings += n
			continue
		}
		rest := strings.TrimPrefix(path, "/v2/")
		if repo, _, ok := strings.Cut(rest, "/manifests/"); ok {
			manifests[repo] += n
		} else if repo, _, ok := strings.Cut(rest, "/blobs/"); ok {
			blobs[repo] += n
		}
	}
	return pings, manifests, blobs, total
}

// serve starts an endpoint on ip: the store behind latency, or (hang) a
// listener that accepts connections, reads what is sent and never answers.
func serve(t *testing.T, ip string, s *store, latency time.Duration, hang bool) *endpoint {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{host: l.Addr().String(), latency: latency, hang: hang, requests: map[string]int{}}
	if hang {
		var mu sync.Mutex
		var open []net.Conn
		done := make(chan struct{})
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				e.conns.Add(1)
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
				go func() {
					// Read requests (to count them), answer none.
					r := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(r)
						if err != nil {
							return
						}
						e.count(req.Method, req.URL.Path)
						select {
						case <-done:
							return
						default:
						}
					}
				}()
			}
		}()
		t.Cleanup(func() {
			close(done)
			_ = l.Close()
			mu.Lock()
			for _, c := range open {
				_ = c.Close()
			}
			mu.Unlock()
		})
		return e
	}
	srv := &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.count(r.Method, r.URL.Path)
		if e.latency > 0 {
			select {
			case <-time.After(e.latency):
			case <-r.Context().Done():
				return
			}
		}
		s.handler.ServeHTTP(w, r)
	}), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			e.conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return e
}

// stormResult is what one storm measured.
type stormResult struct {
	pods            int
	wall            time.Duration
	lat             []time.Duration
	rewritten       int // exec form from the image config, image pinned
	warnedNaming    int // exec form left alone with a warning naming the image
	withoutSleep    int // admitted without the preStop sleep: must be 0
	failed          int // create errors: must be 0
	failedFirstErr  error
	overDeadline    int // creates slower than the inspection deadline
	unexplainedWarn []string
}

// storm creates pods pods in ns from clients concurrent clients; pod k
// names image order[k] on host (no command, so the argv comes from the
// image config).
func storm(t *testing.T, ns, host string, order []int, nClients int, deadline time.Duration) *stormResult {
	t.Helper()
	cs, ws := clients(nClients)
	res := &stormResult{pods: len(order), lat: make([]time.Duration, len(order))}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	grace := int64(30)
	start := time.Now()
	for c := range nClients {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(order) {
					return
				}
				image := fmt.Sprintf("%s/app-%05d:1", host, order[k])
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", k), Labels: map[string]string{"app": "storm"}},
					Spec: corev1.PodSpec{
						TerminationGracePeriodSeconds: &grace,
						Containers:                    []corev1.Container{{Name: "app", Image: image}},
					},
				}
				t0 := time.Now()
				got, err := cs[c].CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
				d := time.Since(t0)
				warns := ws[c].take()
				mu.Lock()
				res.lat[k] = d
				if d > deadline {
					res.overDeadline++
				}
				switch {
				case err != nil:
					res.failed++
					if res.failedFirstErr == nil {
						res.failedFirstErr = err
					}
				default:
					ct := got.Spec.Containers[0]
					if ct.Lifecycle == nil || ct.Lifecycle.PreStop == nil || (ct.Lifecycle.PreStop.Sleep == nil && ct.Lifecycle.PreStop.Exec == nil) {
						res.withoutSleep++
					}
					switch {
					case len(ct.Command) > 0 && strings.Contains(ct.Image, "@sha256:"):
						res.rewritten++
					case slices.ContainsFunc(warns, func(w string) bool { return strings.Contains(w, image) && strings.Contains(w, "exec-form left alone") }):
						res.warnedNaming++
					default:
						res.unexplainedWarn = append(res.unexplainedWarn, fmt.Sprintf("%s: command %q image %s warnings %q", pod.Name, ct.Command, ct.Image, warns))
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.wall = time.Since(start)
	return res
}

// TestSlowRegistries: pods created by 50 concurrent clients through the
// real API server and the real webhook, image inspection on with its
// defaults (2 s deadline, errorTTL 10 s), each pod naming one of 500
// shell-form images in a random order (each image 4 times), the registry
// answering each request after 0 (the baseline), 200 ms, 1 s, 5 s, or
// never. Every pod must be admitted with the preStop sleep, rewritten or
// warned about by image name, no webhook call slower than 2.5 s as the API
// server times it (the 2 s deadline bounds it), the API server's fail-open
// and rejection counters unmoved; singleflight: each image's manifest
// fetched once; errorTTL: a registry that does not answer is remembered as
// down for every image, so it costs the clients in flight one deadline at
// the start and one probe per errorTTL after, not a deadline per pod.
func TestSlowRegistries(t *testing.T) {
	const (
		images   = 500
		perImage = 4
		nClients = 50
	)
	ip := hostIP(t)
	st := newStore(t)
	t0 := time.Now()
	st.pushShellForm(t, images)
	t.Logf("pushed %d images in %v", images, time.Since(t0).Round(time.Millisecond))

	type regCase struct {
		name    string
		latency time.Duration
		hang    bool
		ep      *endpoint
	}
	cases := []*regCase{
		{name: "0ms"},
		{name: "200ms", latency: 200 * time.Millisecond},
		{name: "1s", latency: time.Second},
		{name: "5s", latency: 5 * time.Second},
		{name: "never", hang: true},
	}
	var insecure []string
	for _, c := range cases {
		c.ep = serve(t, ip, st, c.latency, c.hang)
		insecure = append(insecure, `"`+c.ep.host+`"`)
	}
	def := policy.Default().ImageInspection
	deadline, errorTTL := def.Timeout.Duration, def.ErrorTTL.Duration
	wh := startWebhook(t, "registries", "imageInspection:\n  enabled: true\n  insecureRegistries: ["+strings.Join(insecure, ", ")+"]\n")
	ns := servedNamespace(t, wh)
	register(t, wh, ns)
	plain, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "unserved-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(25, 3))
	order := make([]int, 0, images*perImage)
	for k := range images * perImage {
		order = append(order, k%images)
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	// Webhook calls the API server saw take longer than 2.5 s (a bucket
	// of its admission duration histogram).
	slowCalls := func() float64 {
		f := apiMetrics(t)
		w := map[string]string{"name": wh.name, "type": "admit"}
		return f.sum("apiserver_admission_webhook_admission_duration_seconds_count", w) -
			f.sum("apiserver_admission_webhook_admission_duration_seconds_bucket", map[string]string{"name": wh.name, "type": "admit", "le": "2.5"})
	}
	failOpen := func() float64 {
		return apiMetrics(t).sum("apiserver_admission_webhook_fail_open_count", map[string]string{"type": "admit"})
	}
	rejected := func() float64 {
		return apiMetrics(t).sum("apiserver_admission_webhook_rejection_count", nil)
	}
	deleteAll := func(ns string) {
		zero := int64(0)
		if err := kube.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The floor: the same storm in a namespace no webhook serves.
	none := storm(t, plain.Name, cases[0].ep.host, order, nClients, deadline)
	deleteAll(plain.Name)
	noneP50, noneP99 := quantile(none.lat, 0.5), quantile(none.lat, 0.99)
	t.Logf("RESULT registry none (no webhook): %d pods in %v, create p50 %.1f ms p99 %.1f ms max %.1f ms",
		none.pods, none.wall.Round(time.Millisecond), noneP50, noneP99, quantile(none.lat, 1))

	var table []string
	for _, c := range cases {
		fo0, rej0, slow0 := failOpen(), rejected(), slowCalls()
		r := storm(t, ns, c.ep.host, order, nClients, deadline)
		fo1, rej1, slow1 := failOpen(), rejected(), slowCalls()
		deleteAll(ns)
		pings, manifests, blobs, total := c.ep.counts()
		maxManifests, maxBlobs := 0, 0
		for _, n := range manifests {
			maxManifests = max(maxManifests, n)
		}
		for _, n := range blobs {
			maxBlobs = max(maxBlobs, n)
		}
		p50, p90, p99, mx := quantile(r.lat, 0.5), quantile(r.lat, 0.9), quantile(r.lat, 0.99), quantile(r.lat, 1)
		// Lookups of one image are at least deadline+errorTTL apart once
		// one failed (or a tag TTL apart once one succeeded).
		lookupBound := 1 + int(r.wall/(errorTTL+deadline/2))
		line := fmt.Sprintf("| %s | %d | %.1f s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %d | %d | %d/%d | %d | %d | %d | %v |",
			c.name, r.pods, r.wall.Seconds(), p50, p90, p99, mx, p50-noneP50, p99-noneP99, r.overDeadline,
			r.rewritten, r.warnedNaming, total, c.ep.conns.Load(), pings, len(manifests), maxManifests, fo1-fo0)
		table = append(table, line)
		t.Logf("RESULT registry %s: %d pods in %v (%.0f/s); create p50 %.1f p90 %.1f p99 %.1f max %.1f ms (added p50 %.1f p99 %.1f ms); %d slower than the %v deadline; rewritten %d, warned naming the image %d, without sleep %d, failed %d; registry: %d requests on %d connections, %d pings, manifests of %d repos (at most %d per repo), blobs at most %d per repo; fail-open +%v, rejected +%v; webhook calls over 2.5 s (API server histogram) %v",
			c.name, r.pods, r.wall.Round(time.Millisecond), float64(r.pods)/r.wall.Seconds(), p50, p90, p99, mx, p50-noneP50, p99-noneP99,
			r.overDeadline, deadline, r.rewritten, r.warnedNaming, r.withoutSleep, r.failed, total, c.ep.conns.Load(), pings, len(manifests), maxManifests, maxBlobs, fo1-fo0, rej1-rej0, slow1-slow0)

		if r.failed > 0 {
			t.Errorf("%s: %d pods not admitted, first: %v", c.name, r.failed, r.failedFirstErr)
		}
		if r.withoutSleep > 0 {
			t.Errorf("%s: %d pods admitted without the preStop sleep", c.name, r.withoutSleep)
		}
		if len(r.unexplainedWarn) > 0 {
			t.Errorf("%s: %d pods neither rewritten nor warned about by image name, e.g. %s", c.name, len(r.unexplainedWarn), r.unexplainedWarn[0])
		}
		if fo1 != fo0 || rej1 != rej0 {
			t.Errorf("%s: apiserver_admission_webhook_fail_open_count +%v, rejection_count +%v; want 0", c.name, fo1-fo0, rej1-rej0)
		}
		// The deadline bounds the webhook call as the API server times it
		// (end to end, a create also queues in a saturated API server:
		// see the no-webhook floor's p99).
		if slow1 != slow0 {
			t.Errorf("%s: %v webhook calls took over 2.5 s (the API server's admission duration histogram); the %v deadline must bound them", c.name, slow1-slow0, deadline)
		}
		switch {
		case c.latency == 0 && !c.hang:
			if r.rewritten != r.pods {
				t.Errorf("%s: %d of %d pods rewritten; a fast registry answers every lookup", c.name, r.rewritten, r.pods)
			}
			fallthrough
		case c.latency < deadline/3 && !c.hang:
			// Singleflight and the caches: each image's manifest once.
			if len(manifests) != images || maxManifests != 1 {
				t.Errorf("%s: manifests of %d repos fetched, at most %d times each; want %d repos once each (singleflight, tag cache)", c.name, len(manifests), maxManifests, images)
			}
		default:
			if r.rewritten > 0 && c.hang {
				t.Errorf("%s: %d pods rewritten from a registry that never answers", c.name, r.rewritten)
			}
			if maxManifests > lookupBound {
				t.Errorf("%s: an image's manifest was asked for %d times in %v; errorTTL %v allows %d", c.name, maxManifests, r.wall, errorTTL, lookupBound)
			}
			// The registry is remembered as down for every image: the
			// first lookups of the clients in flight, then one probe per
			// errorTTL (a few more if probes race).
			if limit := nClients + 2*(1+int(r.wall/errorTTL)); pings > limit {
				t.Errorf("%s: %d lookups (pings) for %d pods of %d images in %v; one per client at the start and one per errorTTL (%v) after allow %d", c.name, pings, r.pods, images, r.wall, errorTTL, limit)
			}
		}
	}
	t.Logf("RESULT table\n| registry latency | pods | wall | p50 ms | p90 ms | p99 ms | max ms | added p50 | added p99 | > deadline | rewritten | warned | registry requests | connections/pings | repos asked | max manifest GETs per repo | fail-open |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n%s",
		strings.Join(table, "\n"))
}
