// Package imagetest runs a real OCI registry in tests: go-containerregistry's
// in-memory registry behind an httptest server, with images the test builds
// and pushes, request counters, and switches for latency, basic auth and
// outages. It never touches the network beyond loopback.
package imagetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Image describes an image to build: its config fields, and its platform
// (linux/amd64 when OS and Architecture are empty).
type Image struct {
	Entrypoint   []string
	Cmd          []string
	Shell        []string
	User         string
	OS           string
	Architecture string
	Variant      string
}

// Request is one request the registry received.
type Request struct {
	Method string
	Path   string
}

// Registry is a registry server for one test. The code under test talks to
// Host; the test's own pushes go through a second, unobserved listener on
// the same storage, so they neither count nor need credentials.
type Registry struct {
	// Host is "127.0.0.1:port", the registry part of image references.
	Host string

	srv  *httptest.Server
	push *httptest.Server

	mu       sync.Mutex
	requests []Request
	latency  time.Duration
	user     string
	pass     string
	closed   bool
}

// NewRegistry starts a registry that is shut down when the test ends.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	storage := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r := &Registry{push: httptest.NewServer(storage)}
	r.srv = httptest.NewServer(r.observe(storage))
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	t.Cleanup(func() {
		r.Close()
		r.push.Close()
	})
	return r
}

// observe wraps the storage with the counters and switches.
func (r *Registry) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, Request{Method: req.Method, Path: req.URL.Path})
		latency, user, pass := r.latency, r.user, r.pass
		r.mu.Unlock()

		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-req.Context().Done():
				return
			}
		}
		if user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="imagetest"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}

// Ref returns the reference of repo (with ":tag" or "@digest" if given) on
// this registry, e.g. Ref("app:1") = "127.0.0.1:port/app:1".
func (r *Registry) Ref(repoAndTag string) string { return r.Host + "/" + repoAndTag }

// Push builds img, pushes it as repo:tag and returns its manifest digest.
func (r *Registry) Push(t testing.TB, repo, tag string, img Image) string {
	t.Helper()
	i := Build(t, img)
	if err := remote.Write(r.pushRef(t, repo, tag), i); err != nil {
		t.Fatalf("imagetest: pushing %s:%s: %v", repo, tag, err)
	}
	return digestOf(t, i)
}

// IndexOption changes what PushIndex builds.
type IndexOption func(*indexOptions)

type indexOptions struct{ attestations bool }

// WithAttestations adds, after the images, one BuildKit-style attestation
// manifest per image (platform unknown/unknown, annotated
// vnd.docker.reference.type=attestation-manifest), as `docker buildx build`
// pushes by default.
func WithAttestations() IndexOption {
	return func(o *indexOptions) { o.attestations = true }
}

// PushIndex builds a multi-arch image index of imgs, each under its own
// platform, pushes it as repo:tag and returns the index digest.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, imgs []Image, opts ...IndexOption) string {
	t.Helper()
	var o indexOptions
	for _, opt := range opts {
		opt(&o)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	var attestations []mutate.IndexAddendum
	for _, img := range imgs {
		i := Build(t, img)
		cf, err := i.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		p := cf.Platform()
		adds = append(adds, mutate.IndexAddendum{Add: i, Descriptor: v1.Descriptor{Platform: p}})
		if o.attestations {
			att := Build(t, Image{OS: "unknown", Architecture: "unknown"})
			attestations = append(attestations, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{
					"vnd.docker.reference.type":   "attestation-manifest",
					"vnd.docker.reference.digest": digestOf(t, i),
				},
			}})
		}
	}
	idx = mutate.AppendManifests(idx, append(adds, attestations...)...)
	if err := remote.WriteIndex(r.pushRef(t, repo, tag), idx); err != nil {
		t.Fatalf("imagetest: pushing index %s:%s: %v", repo, tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// Build returns img as a layerless v1.Image (the config is all podgrace
// reads).
func Build(t testing.TB, img Image) v1.Image {
	t.Helper()
	cf := &v1.ConfigFile{
		OS:           img.OS,
		Architecture: img.Architecture,
		Variant:      img.Variant,
		Config: v1.Config{
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Shell:      img.Shell,
			User:       img.User,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		cf.Architecture = "amd64"
	}
	i, err := mutate.ConfigFile(empty.Image, cf)
	if err != nil {
		t.Fatalf("imagetest: building image: %v", err)
	}
	return i
}

func (r *Registry) pushRef(t testing.TB, repo, tag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(r.push.URL, "http://")+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatalf("imagetest: %v", err)
	}
	return ref
}

func digestOf(t testing.TB, i v1.Image) string {
	t.Helper()
	d, err := i.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// SetLatency delays every later request by d (0 turns it off). A request
// whose client gives up stops waiting.
func (r *Registry) SetLatency(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latency = d
}

// RequireAuth makes every later request, the /v2/ ping included, need HTTP
// basic auth as user:pass (401 with a Basic challenge otherwise). An empty
// user turns it off.
func (r *Registry) RequireAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.pass = user, pass
}

// PullSecret returns a kubernetes.io/dockerconfigjson Secret named name
// holding user:pass for this registry, as `kubectl create secret
// docker-registry --docker-server=<Host>` writes it.
func (r *Registry) PullSecret(name, user, pass string) corev1.Secret {
	cfg := map[string]map[string]map[string]string{"auths": {r.Host: {
		"username": user,
		"password": pass,
		"auth":     base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
	}}}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(fmt.Sprintf("imagetest: %v", err)) // a map of strings always marshals
	}
	return corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: b},
	}
}

// Close takes the registry down: later connections are refused. The pushes
// listener stays up until the test ends.
func (r *Registry) Close() {
	r.mu.Lock()
	closed := r.closed
	r.closed = true
	r.mu.Unlock()
	if !closed {
		r.srv.Close()
	}
}

// Requests returns the requests received so far, in order.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Reset forgets the requests received so far.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// Count returns how many requests received so far match.
func (r *Registry) Count(match func(Request) bool) int {
	n := 0
	for _, q := range r.Requests() {
		if match(q) {
			n++
		}
	}
	return n
}

// Total returns how many requests were received so far.
func (r *Registry) Total() int { return r.Count(func(Request) bool { return true }) }

// BlobGets counts GETs of blobs. The code under test never reads layers, so
// these are config blob fetches.
func (r *Registry) BlobGets() int {
	return r.Count(func(q Request) bool { return q.Method == http.MethodGet && strings.Contains(q.Path, "/blobs/") })
}

// ManifestGets counts GETs of manifests (by tag or digest).
func (r *Registry) ManifestGets() int {
	return r.Count(func(q Request) bool { return q.Method == http.MethodGet && strings.Contains(q.Path, "/manifests/") })
}

// ManifestHeads counts HEADs of manifests.
func (r *Registry) ManifestHeads() int {
	return r.Count(func(q Request) bool { return q.Method == http.MethodHead && strings.Contains(q.Path, "/manifests/") })
}
