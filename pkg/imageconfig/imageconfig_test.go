package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/internal/imagetest"
)

// fakeClock drives the caches' TTLs without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newInspector returns an Inspector that may reach regs, the tests'
// registries on loopback (guard_test.go tests the refusal of any other), with
// a fake clock.
func newInspector(o Options, regs ...*imagetest.Registry) (*Inspector, *fakeClock) {
	for _, r := range regs {
		o.LoopbackRegistries = append(o.LoopbackRegistries, r.Host)
	}
	i := New(o)
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	i.now = c.now
	return i, c
}

func inspect(t *testing.T, i *Inspector, r Request) Result {
	t.Helper()
	res, err := i.Inspect(context.Background(), r)
	if err != nil {
		t.Fatalf("Inspect(%q): %v", r.Image, err)
	}
	return res
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func TestInspectReadsConfig(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	tests := map[string]imagetest.Image{
		"shell-form-cmd":        {Cmd: []string{"/bin/sh", "-c", "ruby server.rb"}},
		"shell-form-entrypoint": {Entrypoint: []string{"/bin/sh", "-c", "exec-me --now"}, Cmd: []string{"ignored"}},
		"exec-form":             {Entrypoint: []string{"/usr/bin/tini", "--"}, Cmd: []string{"puma", "-C", "config/puma.rb"}},
		"bash-shell":            {Shell: []string{"/bin/bash", "-o", "pipefail", "-c"}, Cmd: []string{"/bin/bash", "-o", "pipefail", "-c", "npm start"}, User: "1000:1000"},
		"empty":                 {},
	}
	i, _ := newInspector(Options{}, reg)
	for repo, img := range tests {
		t.Run(repo, func(t *testing.T) {
			t.Parallel()
			digest := reg.Push(t, repo, "1.2", img)
			res := inspect(t, i, Request{Image: reg.Ref(repo + ":1.2")})
			want := Config{Entrypoint: img.Entrypoint, Cmd: img.Cmd, Shell: img.Shell}
			if !sameArgv(res.Config, want) {
				t.Errorf("config = %+v, want %+v", res.Config, want)
			}
			if res.Digest != digest {
				t.Errorf("digest = %s, want %s", res.Digest, digest)
			}
			if wantPinned := reg.Ref(repo + "@" + digest); res.Pinned != wantPinned {
				t.Errorf("pinned = %s, want %s", res.Pinned, wantPinned)
			}
			if res.FromCache {
				t.Error("first inspection claims to come from the cache")
			}

			// By digest: same answer, already pinned, and from the cache.
			byDigest := inspect(t, i, Request{Image: reg.Ref(repo + "@" + digest)})
			if !sameArgv(byDigest.Config, want) || byDigest.Digest != digest || byDigest.Pinned != reg.Ref(repo+"@"+digest) || !byDigest.FromCache {
				t.Errorf("by digest = %+v", byDigest)
			}
		})
	}
}

func TestInspectNeverReadsLayers(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"app"}})
	i, _ := newInspector(Options{}, reg)
	inspect(t, i, Request{Image: reg.Ref("app:1")})
	// ping, manifest GET, config blob GET: nothing else.
	if got := reg.ManifestGets(); got != 1 {
		t.Errorf("manifest GETs = %d, want 1", got)
	}
	if got := reg.BlobGets(); got != 1 {
		t.Errorf("blob GETs = %d, want 1 (the config)", got)
	}
	if got := reg.Total(); got != 3 {
		t.Errorf("requests = %v, want ping + manifest + config", reg.Requests())
	}
}

func TestPin(t *testing.T) {
	t.Parallel()
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := map[string]string{
		"nginx":                      "nginx@" + d,
		"nginx:1.27":                 "nginx@" + d,
		"docker.io/library/nginx:1":  "docker.io/library/nginx@" + d,
		"localhost:5000/app":         "localhost:5000/app@" + d,
		"localhost:5000/app:v1":      "localhost:5000/app@" + d,
		"reg.example/team/app:1.2.3": "reg.example/team/app@" + d,
		"app@" + d:                   "app@" + d,
		"app:1@" + d:                 "app:1@" + d,
	}
	for image, want := range tests {
		if got := pin(image, d); got != want {
			t.Errorf("pin(%q) = %q, want %q", image, got, want)
		}
	}
}

var (
	amd64 = imagetest.Image{Architecture: "amd64", Cmd: []string{"/bin/sh", "-c", "ruby server.rb"}}
	arm64 = imagetest.Image{Architecture: "arm64", Cmd: []string{"/bin/sh", "-c", "ruby server.rb"}}
)

func TestInspectIndexAgreeing(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	digest := reg.PushIndex(t, "multi", "1", []imagetest.Image{amd64, arm64}, imagetest.WithAttestations())
	i, _ := newInspector(Options{}, reg)

	res := inspect(t, i, Request{Image: reg.Ref("multi:1")})
	if !slices.Equal(res.Config.Cmd, amd64.Cmd) {
		t.Errorf("cmd = %q, want %q", res.Config.Cmd, amd64.Cmd)
	}
	if res.Digest != digest {
		t.Errorf("digest = %s, want the index digest %s", res.Digest, digest)
	}
	// Two platforms: two config blobs. The attestation manifests are not
	// even fetched.
	if got := reg.BlobGets(); got != 2 {
		t.Errorf("blob GETs = %d, want 2", got)
	}
	if got := reg.ManifestGets(); got != 3 {
		t.Errorf("manifest GETs = %d, want 3 (index + 2 images), requests %v", got, reg.Requests())
	}

	// A platform picks one; all already cached.
	reg.Reset()
	res = inspect(t, i, Request{Image: reg.Ref("multi:1"), Platform: &v1.Platform{Architecture: "arm64"}})
	if !slices.Equal(res.Config.Cmd, arm64.Cmd) || !res.FromCache || reg.Total() != 0 {
		t.Errorf("arm64: %+v after %v", res, reg.Requests())
	}
}

func TestInspectIndexDisagreeing(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	a := imagetest.Image{Architecture: "amd64", Entrypoint: []string{"/app-amd64"}}
	b := imagetest.Image{Architecture: "arm64", Entrypoint: []string{"/app-arm64"}}
	reg.PushIndex(t, "split", "1", []imagetest.Image{a, b}, imagetest.WithAttestations())
	i, _ := newInspector(Options{}, reg)

	_, err := i.Inspect(context.Background(), Request{Image: reg.Ref("split:1")})
	wantErr(t, err, ErrPlatformsDisagree)
	if ErrorKind(err) != KindPlatformsDisagree || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("error %q (kind %s) should name the platforms", err, ErrorKind(err))
	}
	// Asked again: the same answer from the cache.
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("split:1")})
	wantErr(t, err, ErrPlatformsDisagree)

	for _, tc := range []struct {
		platform v1.Platform
		want     []string
	}{
		{v1.Platform{Architecture: "amd64"}, a.Entrypoint},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, b.Entrypoint},
		{v1.Platform{Architecture: "arm64", Variant: "v8"}, b.Entrypoint},
	} {
		res := inspect(t, i, Request{Image: reg.Ref("split:1"), Platform: &tc.platform})
		if !slices.Equal(res.Config.Entrypoint, tc.want) {
			t.Errorf("%v: entrypoint = %q, want %q", tc.platform, res.Config.Entrypoint, tc.want)
		}
	}

	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("split:1"), Platform: &v1.Platform{Architecture: "s390x"}})
	wantErr(t, err, ErrNotFound)
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("split:1"), Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}})
	wantErr(t, err, ErrNotLinux)
}

func TestInspectNotLinux(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	win := imagetest.Image{OS: "windows", Architecture: "amd64", Cmd: []string{"cmd", "/S", "/C", "app.exe"}}
	reg.Push(t, "win", "1", win)
	reg.PushIndex(t, "winindex", "1", []imagetest.Image{win})
	reg.PushIndex(t, "mixed", "1", []imagetest.Image{amd64, win, arm64}, imagetest.WithAttestations())
	i, _ := newInspector(Options{}, reg)

	_, err := i.Inspect(context.Background(), Request{Image: reg.Ref("win:1")})
	wantErr(t, err, ErrNotLinux)
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("winindex:1")})
	wantErr(t, err, ErrNotLinux)

	// Windows images of a mixed index are ignored, and never fetched.
	reg.Reset()
	res := inspect(t, i, Request{Image: reg.Ref("mixed:1")})
	if !slices.Equal(res.Config.Cmd, amd64.Cmd) {
		t.Errorf("mixed: cmd = %q", res.Config.Cmd)
	}
	if got := reg.BlobGets(); got != 2 {
		t.Errorf("mixed: blob GETs = %d, want 2", got)
	}
}

func TestInspectPrivateRegistry(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	img := imagetest.Image{Cmd: []string{"/bin/sh", "-c", "secret-app"}}
	reg.Push(t, "private", "1", img)
	reg.RequireAuth("robot", "s3cret")
	i, clock := newInspector(Options{}, reg)
	ref := reg.Ref("private:1")

	_, err := i.Inspect(context.Background(), Request{Image: ref})
	wantErr(t, err, ErrUnauthorized)
	if ErrorKind(err) != KindUnauthorized {
		t.Errorf("kind = %s", ErrorKind(err))
	}

	wrong, err := KeychainFromSecrets([]corev1.Secret{reg.PullSecret("wrong", "robot", "guess")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = i.Inspect(context.Background(), Request{Image: ref, Keychain: wrong})
	wantErr(t, err, ErrUnauthorized)

	// The anonymous failure (still cached) does not block a request with
	// credentials, and the right secret reads the config.
	right, err := KeychainFromSecrets([]corev1.Secret{
		{Type: "Opaque"}, // ignored
		reg.PullSecret("pull", "robot", "s3cret"),
	})
	if err != nil {
		t.Fatal(err)
	}
	res := inspect(t, i, Request{Image: ref, Keychain: right})
	if !slices.Equal(res.Config.Cmd, img.Cmd) {
		t.Errorf("cmd = %q", res.Config.Cmd)
	}
	// The same secret (a different Keychain value) hits the cache.
	again, err := KeychainFromSecrets([]corev1.Secret{reg.PullSecret("other-name", "robot", "s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	if res := inspect(t, i, Request{Image: ref, Keychain: again}); !res.FromCache {
		t.Error("same credential, different Secret: want a cache hit")
	}

	// What the secret read is not handed to anyone without it, even once
	// the anonymous failure has expired: they must ask the registry, which
	// refuses. Nor by digest.
	clock.advance(DefaultErrorTTL + time.Second)
	for _, r := range []Request{
		{Image: ref},
		{Image: ref, Keychain: wrong},
		{Image: reg.Ref("private@" + res.Digest)},
	} {
		reg.Reset()
		_, err := i.Inspect(context.Background(), r)
		wantErr(t, err, ErrUnauthorized)
		if reg.Total() == 0 {
			t.Errorf("%s: answered without asking the registry", r.Image)
		}
	}
}

func TestInspectTimeout(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "slow", "1", imagetest.Image{Cmd: []string{"app"}})
	reg.SetLatency(5 * time.Second)
	const timeout = 200 * time.Millisecond
	// Nothing remembered (the registry would be, as down): each image
	// below meets the deadline itself.
	i, _ := newInspector(Options{Timeout: timeout, ErrorTTL: -1}, reg)

	start := time.Now()
	_, err := i.Inspect(context.Background(), Request{Image: reg.Ref("slow:1")})
	elapsed := time.Since(start)
	wantErr(t, err, ErrTimeout)
	if ErrorKind(err) != KindTimeout {
		t.Errorf("kind = %s", ErrorKind(err))
	}
	if elapsed > 3*timeout {
		t.Errorf("Inspect took %v with a %v timeout", elapsed, timeout)
	}

	// A caller's shorter deadline wins too.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = i.Inspect(ctx, Request{Image: reg.Ref("slow:2")})
	wantErr(t, err, ErrTimeout)
	if elapsed := time.Since(start); elapsed > 3*timeout {
		t.Errorf("Inspect took %v with a 50ms caller deadline", elapsed)
	}

	// A caller that goes away gets its own error, not a timeout.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = i.Inspect(ctx, Request{Image: reg.Ref("slow:3")})
	if !errors.Is(err, context.Canceled) || ErrorKind(err) != KindCanceled {
		t.Errorf("canceled caller: %v (kind %s)", err, ErrorKind(err))
	}
}

// countingTransport counts the requests that leave the process.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestInspectRegistryDown(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"app"}})
	reg.Close()
	counter := &countingTransport{}
	i, clock := newInspector(Options{Transport: counter, ErrorTTL: 10 * time.Second}, reg)
	m := &recordingMetrics{}
	i.metrics = m

	_, err := i.Inspect(context.Background(), Request{Image: reg.Ref("app:1")})
	wantErr(t, err, ErrRegistry)
	if ErrorKind(err) != KindRegistry {
		t.Errorf("kind = %s", ErrorKind(err))
	}
	sent := counter.n.Load()
	if sent == 0 {
		t.Fatal("no request was attempted")
	}

	// Within ErrorTTL: the remembered error, no request.
	clock.advance(9 * time.Second)
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("app:1")})
	wantErr(t, err, ErrRegistry)
	if got := counter.n.Load(); got != sent {
		t.Errorf("%d requests within ErrorTTL, want none", got-sent)
	}
	if m.count("cache:error") != 1 || m.count("error:registry") != 2 {
		t.Errorf("metrics = %v", m.snapshot())
	}

	// After it: asked again.
	clock.advance(2 * time.Second)
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("app:1")})
	wantErr(t, err, ErrRegistry)
	if got := counter.n.Load(); got == sent {
		t.Error("no request after ErrorTTL")
	}
}

// TestInspectRegistryDownEveryImage: a registry that never answers costs
// one deadline, not one per image: once a lookup timed out, the other
// images it serves fail at once, without a request, for ErrorTTL (issue
// 25: 500 images behind a dead registry made nearly every pod of a storm
// wait the 2 s deadline). After ErrorTTL it is asked again, and once it
// answers its images are read again. An image that is merely missing
// does not mark its registry down.
func TestInspectRegistryDownEveryImage(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	const images = 10
	for k := range images {
		reg.Push(t, fmt.Sprintf("app-%d", k), "1", imagetest.Image{Cmd: []string{"app"}})
	}
	reg.Reset()
	reg.SetLatency(time.Hour) // accepts, never answers within any deadline
	i, clock := newInspector(Options{Timeout: 200 * time.Millisecond, ErrorTTL: 10 * time.Second}, reg)

	_, err := i.Inspect(context.Background(), Request{Image: reg.Ref("app-0:1")})
	wantErr(t, err, ErrTimeout)
	sent := reg.Total()
	if sent == 0 {
		t.Fatal("no request reached the registry")
	}
	for k := 1; k < images; k++ {
		_, err := i.Inspect(context.Background(), Request{Image: reg.Ref(fmt.Sprintf("app-%d:1", k))})
		wantErr(t, err, ErrTimeout)
		if !strings.Contains(err.Error(), "remembered as down") {
			t.Errorf("app-%d: %v, want the registry remembered as down", k, err)
		}
	}
	if got := reg.Total(); got != sent {
		t.Errorf("%d more requests for %d other images of a registry that timed out, want none", got-sent, images-1)
	}

	// After ErrorTTL it is asked again; it answers now. (The first
	// lookup, detached from its caller, ends at its own deadline, an
	// instant after its caller gave up: let it end first, or it would
	// remember the registry as down again after the clock moved.)
	time.Sleep(time.Second)
	clock.advance(11 * time.Second)
	// One lookup probes it (still down); while it waits, the other images
	// still fail at once.
	probed := make(chan error, 1)
	go func() {
		_, err := i.Inspect(context.Background(), Request{Image: reg.Ref("app-1:1")})
		probed <- err
	}()
	for reg.Total() == sent {
		time.Sleep(5 * time.Millisecond)
	}
	sent = reg.Total()
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("app-2:1")})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "remembered as down") || reg.Total() != sent {
		t.Errorf("during the probe: %v, %d requests; want the registry remembered as down and no request", err, reg.Total()-sent)
	}
	wantErr(t, <-probed, ErrTimeout)
	time.Sleep(time.Second) // the probe's own lookup ends too
	reg.SetLatency(0)
	clock.advance(11 * time.Second)
	inspect(t, i, Request{Image: reg.Ref("app-1:1")})
	if reg.Total() == sent {
		t.Error("not asked again after ErrorTTL")
	}
	// A missing image is the image's failure, not the registry's.
	_, err = i.Inspect(context.Background(), Request{Image: reg.Ref("missing:1")})
	wantErr(t, err, ErrNotFound)
	inspect(t, i, Request{Image: reg.Ref("app-2:1")})
}

func TestInspectNotFound(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"app"}})
	i, _ := newInspector(Options{}, reg)
	for _, image := range []string{
		reg.Ref("app:2"),
		reg.Ref("nothing:1"),
		reg.Ref("app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
	} {
		_, err := i.Inspect(context.Background(), Request{Image: image})
		wantErr(t, err, ErrNotFound)
		if ErrorKind(err) != KindNotFound {
			t.Errorf("%s: kind %s", image, ErrorKind(err))
		}
	}
}

func TestInspectInvalidReference(t *testing.T) {
	t.Parallel()
	i, _ := newInspector(Options{Transport: failingTransport{t}})
	for _, image := range []string{"", "UPPER/case", "app:bad tag", "app@sha256:short", "app:"} {
		_, err := i.Inspect(context.Background(), Request{Image: image})
		wantErr(t, err, ErrInvalidReference)
		if ErrorKind(err) != KindInvalidReference {
			t.Errorf("%q: kind %s", image, ErrorKind(err))
		}
	}
}

type failingTransport struct{ t *testing.T }

func (f failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
	return nil, errors.New("no requests expected")
}

func TestInspectCaches(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	first := reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "v1"}})
	i, clock := newInspector(Options{TagTTL: time.Minute}, reg)
	m := &recordingMetrics{}
	i.metrics = m
	ref := reg.Ref("app:1")

	inspect(t, i, Request{Image: ref})
	if reg.BlobGets() != 1 {
		t.Fatalf("first inspection: %v", reg.Requests())
	}

	// Within TagTTL: no request at all.
	reg.Reset()
	clock.advance(59 * time.Second)
	res := inspect(t, i, Request{Image: ref})
	if !res.FromCache || reg.Total() != 0 {
		t.Errorf("second inspection: FromCache=%v, requests %v", res.FromCache, reg.Requests())
	}
	if m.count("cache:tag") != 1 || m.count("cache:config") != 1 || m.count("lookup:hit") != 1 || m.count("lookup:miss") != 1 {
		t.Errorf("metrics = %v", m.snapshot())
	}

	// After TagTTL: one HEAD re-resolves the tag; the config is not fetched.
	reg.Reset()
	clock.advance(2 * time.Second)
	res = inspect(t, i, Request{Image: ref})
	if res.FromCache || res.Digest != first {
		t.Errorf("after TagTTL: %+v", res)
	}
	if reg.ManifestHeads() != 1 || reg.ManifestGets() != 0 || reg.BlobGets() != 0 {
		t.Errorf("after TagTTL: requests %v, want one manifest HEAD", reg.Requests())
	}
	// ... and the tag is fresh again.
	reg.Reset()
	if res := inspect(t, i, Request{Image: ref}); !res.FromCache || reg.Total() != 0 {
		t.Errorf("after re-resolution: requests %v", reg.Requests())
	}

	// The tag moves: the cache still answers with the old digest until
	// TagTTL, then the new image is read.
	second := reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "v2"}})
	if res := inspect(t, i, Request{Image: ref}); res.Digest != first {
		t.Errorf("before TagTTL: digest %s, want the cached %s", res.Digest, first)
	}
	clock.advance(61 * time.Second)
	reg.Reset()
	res = inspect(t, i, Request{Image: ref})
	if res.Digest != second || res.Config.Cmd[2] != "v2" {
		t.Errorf("after the tag moved: %+v", res)
	}
	if reg.ManifestHeads() != 1 || reg.BlobGets() != 1 {
		t.Errorf("after the tag moved: requests %v", reg.Requests())
	}

	// The caller owns the result's slices.
	res.Config.Cmd[2] = "mutated"
	if res := inspect(t, i, Request{Image: ref}); res.Config.Cmd[2] != "v2" {
		t.Errorf("a caller's write reached the cache: %q", res.Config.Cmd)
	}
}

func TestInspectDigestCacheIsBounded(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	var digests []string
	for _, cmd := range []string{"a", "b", "c"} {
		digests = append(digests, reg.Push(t, "app", cmd, imagetest.Image{Cmd: []string{cmd}}))
	}
	i, _ := newInspector(Options{MaxEntries: 2}, reg)
	for _, d := range digests {
		inspect(t, i, Request{Image: reg.Ref("app@" + d)})
	}
	if n := i.nodes.len(); n != 2 {
		t.Errorf("digest cache holds %d entries, want 2", n)
	}
	// The oldest was evicted and is fetched again; the newest is not.
	reg.Reset()
	inspect(t, i, Request{Image: reg.Ref("app@" + digests[2])})
	if reg.Total() != 0 {
		t.Errorf("newest: requests %v", reg.Requests())
	}
	inspect(t, i, Request{Image: reg.Ref("app@" + digests[0])})
	if reg.BlobGets() != 1 {
		t.Errorf("evicted: requests %v", reg.Requests())
	}
}

func TestInspectSingleflight(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	img := imagetest.Image{Cmd: []string{"/bin/sh", "-c", "ruby server.rb"}}
	reg.Push(t, "busy", "1", img)
	reg.PushIndex(t, "busyindex", "1", []imagetest.Image{amd64, arm64}, imagetest.WithAttestations())
	// Latency keeps the first lookup in flight while the others arrive.
	reg.SetLatency(20 * time.Millisecond)
	i, _ := newInspector(Options{}, reg)

	for _, tc := range []struct {
		image     string
		platforms []*v1.Platform
		blobs     int
	}{
		{reg.Ref("busy:1"), []*v1.Platform{nil}, 1},
		// Different platforms are different lookups, but share the fetch
		// of each manifest and config.
		{reg.Ref("busyindex:1"), []*v1.Platform{nil, {Architecture: "amd64"}, {Architecture: "arm64"}}, 2},
	} {
		reg.Reset()
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for k := range n {
			wg.Go(func() {
				res, err := i.Inspect(context.Background(), Request{Image: tc.image, Platform: tc.platforms[k%len(tc.platforms)]})
				if err == nil && !slices.Equal(res.Config.Cmd, img.Cmd) {
					err = errors.New("wrong cmd " + strings.Join(res.Config.Cmd, " "))
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if got := reg.BlobGets(); got != tc.blobs {
			t.Errorf("%s: %d concurrent inspections made %d config blob GETs, want %d", tc.image, n, got, tc.blobs)
		}
	}
}

func TestErrorKind(t *testing.T) {
	t.Parallel()
	tests := map[string]error{
		"":                   nil,
		"timeout":            ErrTimeout,
		"not-found":          ErrNotFound,
		"unauthorized":       ErrUnauthorized,
		"platforms-disagree": ErrPlatformsDisagree,
		"not-linux":          ErrNotLinux,
		"invalid-reference":  ErrInvalidReference,
		"registry":           errors.New("something else"),
		"canceled":           context.Canceled,
	}
	for want, err := range tests {
		if err != nil {
			err = wrapf(err)
		}
		if got := ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %q, want %q", err, got, want)
		}
	}
}

func wrapf(err error) error { return errors.Join(errors.New("context"), err) }

func TestMetricsOnHitAndMiss(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"app"}})
	m := &recordingMetrics{}
	i := New(Options{Metrics: m, LoopbackRegistries: []string{reg.Host}})
	inspect(t, i, Request{Image: reg.Ref("app:1")})
	inspect(t, i, Request{Image: reg.Ref("app:1")})
	_, _ = i.Inspect(context.Background(), Request{Image: "BAD"})
	want := map[string]int{
		"lookup:miss": 1, "lookup:hit": 1, "lookup:error": 1,
		"cache:tag": 1, "cache:config": 1, "error:invalid-reference": 1,
	}
	for k, v := range want {
		if m.count(k) != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, m.count(k), v, m.snapshot())
		}
	}
}

type recordingMetrics struct {
	mu     sync.Mutex
	counts map[string]int
}

func (m *recordingMetrics) inc(k string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[string]int{}
	}
	m.counts[k]++
}

func (m *recordingMetrics) ObserveLookup(result string, _ time.Duration) { m.inc("lookup:" + result) }
func (m *recordingMetrics) CacheHit(kind string)                         { m.inc("cache:" + kind) }
func (m *recordingMetrics) Error(kind string)                            { m.inc("error:" + kind) }

func (m *recordingMetrics) count(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[k]
}

func (m *recordingMetrics) snapshot() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}

func BenchmarkInspectCached(b *testing.B) {
	reg := imagetest.NewRegistry(b)
	reg.Push(b, "app", "1", imagetest.Image{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"bundle exec puma"}})
	i := New(Options{LoopbackRegistries: []string{reg.Host}})
	r := Request{Image: reg.Ref("app:1")}
	if _, err := i.Inspect(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	reg.Close() // every iteration must be a cache hit
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := i.Inspect(ctx, r)
		if err != nil || !res.FromCache {
			b.Fatal(res, err)
		}
	}
}
