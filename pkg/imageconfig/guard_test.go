package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/podgrace/podgrace/internal/imagetest"
)

// The attacks of docs/operate/security.md's image inspection section, each against
// a real registry (go-containerregistry's) behind a hostile handler on
// loopback, and the real transport, dialer hook included.

// hostile is a registry whose handler the test writes; unhandled requests
// go to a real registry holding pushed images.
type hostile struct {
	*httptest.Server
	host string
}

func newHostile(t *testing.T, h func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) *hostile {
	t.Helper()
	storage := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h(w, r, storage) {
			storage.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return &hostile{Server: srv, host: strings.TrimPrefix(srv.URL, "http://")}
}

// internal is a service on loopback that no registry may lead podgrace to;
// it counts what reaches it.
func internal(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// TestRefusesLoopback: a deployed podgrace (no LoopbackRegistries) never
// connects to a loopback registry, plain HTTP named or not; not a request
// reaches it.
func TestRefusesLoopback(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "app"}})
	reg.Reset()
	for name, o := range map[string]Options{
		"default":         {},
		"named insecure":  {InsecureRegistries: []string{reg.Host}},
		"other loopback":  {LoopbackRegistries: []string{"127.0.0.1:1"}},
		"localhost alias": {InsecureRegistries: []string{"localhost:" + strings.Split(reg.Host, ":")[1]}},
	} {
		image := reg.Ref("app:1")
		if name == "localhost alias" {
			image = "localhost:" + strings.Split(reg.Host, ":")[1] + "/app:1"
		}
		_, err := New(o).Inspect(context.Background(), Request{Image: image})
		if !errors.Is(err, ErrRefused) || ErrorKind(err) != KindRefused {
			t.Errorf("%s: %v (kind %s), want refused", name, err, ErrorKind(err))
		}
	}
	if n := reg.Total(); n != 0 {
		t.Errorf("the loopback registry received %d requests: %v", n, reg.Requests())
	}
}

// TestRefusesRedirects: a registry podgrace may reach redirects its ping
// (/v2/) or its manifest to loopback (by name, resolved by DNS: the dialer
// hook refuses it), to link-local and metadata addresses and names, and to
// a plain HTTP URL; each is refused and nothing reaches the internal
// service. (go-containerregistry refuses a manifest redirect to a private
// IP literal itself; its ping and token requests it does not guard.)
func TestRefusesRedirects(t *testing.T) {
	t.Parallel()
	svc, hits := internal(t)
	port := svc.URL[strings.LastIndexByte(svc.URL, ':')+1:]
	targets := map[string]string{
		"loopback by name":  "https://localhost:" + port + "/latest/meta-data/",
		"loopback literal":  svc.URL + "/x",
		"metadata v4":       "https://169.254.169.254/latest/meta-data/iam/",
		"metadata v6":       "https://[fd00:ec2::254]/latest/meta-data/",
		"metadata name":     "https://metadata.google.internal/computeMetadata/v1/",
		"mapped link-local": "https://[::ffff:169.254.169.254]/",
		"plain http":        "http://example.invalid/",
	}
	for name, target := range targets {
		for _, path := range []string{"/v2/", "/manifests/"} {
			t.Run(name+" "+path, func(t *testing.T) {
				t.Parallel()
				h := newHostile(t, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
					if strings.HasSuffix(r.URL.Path, path) || (path == "/manifests/" && strings.Contains(r.URL.Path, path)) {
						http.Redirect(w, r, target, http.StatusTemporaryRedirect)
						return true
					}
					return false
				})
				i := New(Options{LoopbackRegistries: []string{h.host}, ErrorTTL: -1})
				_, err := i.Inspect(context.Background(), Request{Image: h.host + "/app:1"})
				refusedByLibrary := path == "/manifests/" && strings.Contains(fmt.Sprint(err), "SSRF protection")
				if !errors.Is(err, ErrRefused) && !refusedByLibrary {
					t.Errorf("redirect to %s: %v, want refused", target, err)
				}
				if strings.Contains(fmt.Sprint(err), "internal secret") {
					t.Errorf("error carries the target's body: %v", err)
				}
			})
		}
	}
	t.Cleanup(func() {
		if n := hits.Load(); n != 0 {
			t.Errorf("the internal service received %d requests", n)
		}
	})
}

// dialAll is a transport whose every connection goes to addr, whatever the
// URL: a test's way to give a loopback registry a private address.
func dialAll(addr string) http.RoundTripper {
	return &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
}

// TestPlainHTTPOnlyNamed: a registry at a private address that speaks plain
// HTTP is refused unless insecureRegistries names it (go-containerregistry
// alone falls back to HTTP for any RFC 1918 address).
func TestPlainHTTPOnlyNamed(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	reg.Push(t, "app", "1", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "app"}})
	const private = "10.11.12.13:5000"
	_, err := New(Options{Transport: dialAll(reg.Host)}).Inspect(context.Background(), Request{Image: private + "/app:1"})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "insecureRegistries") {
		t.Errorf("unnamed plain-HTTP private registry: %v, want refused", err)
	}
	res, err := New(Options{Transport: dialAll(reg.Host), InsecureRegistries: []string{private}}).Inspect(context.Background(), Request{Image: private + "/app:1"})
	if err != nil || len(res.Config.Cmd) != 3 {
		t.Errorf("named: %+v, %v", res, err)
	}
}

// TestRegistryLists: deniedRegistries wins, allowedRegistries restricts,
// neither costs a request.
func TestRegistryLists(t *testing.T) {
	t.Parallel()
	tests := []struct {
		allowed, denied []string
		image           string
		refused         bool
	}{
		{nil, []string{"*.evil.example"}, "reg.evil.example/app:1", true},
		{nil, []string{"docker.io"}, "nginx:1", true},
		{[]string{"*.corp.example", "ghcr.io"}, nil, "quay.io/app:1", true},
		{[]string{"*.corp.example"}, []string{"bad.corp.example:5000"}, "bad.corp.example:5000/app:1", true},
		{[]string{"*.corp.example"}, nil, "reg.corp.example:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", false},
	}
	for _, tc := range tests {
		i := New(Options{AllowedRegistries: tc.allowed, DeniedRegistries: tc.denied, Transport: failingTransport{t}})
		var err error
		if tc.refused {
			_, err = i.Inspect(context.Background(), Request{Image: tc.image}) // failingTransport: no request
		} else {
			err = i.guard.checkRegistry(registryOf(t, tc.image))
		}
		if refused := errors.Is(err, ErrRefused); refused != tc.refused {
			t.Errorf("%s with allowed %q denied %q: %v", tc.image, tc.allowed, tc.denied, err)
		}
	}
}

func registryOf(t *testing.T, image string) string {
	t.Helper()
	ref, err := New(Options{}).parse(image)
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().RegistryStr()
}

// TestErrorBodiesNeverLeak: whatever a registry (or what it redirects to)
// answers in an error body, no error text carries it; the registry error
// codes still classify the error.
func TestErrorBodiesNeverLeak(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-db.internal:5432-admin"
	for name, tc := range map[string]struct {
		status int
		body   string
		want   error
	}{
		"html 500":        {http.StatusInternalServerError, "<html>" + secret + "</html>", ErrRegistry},
		"registry 404":    {http.StatusNotFound, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"` + secret + `","detail":"` + secret + `"}]}`, ErrNotFound},
		"registry denied": {http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"` + secret + `"}]}`, ErrUnauthorized},
		"odd code":        {http.StatusBadRequest, `{"errors":[{"code":"` + secret + `"}]}`, ErrRegistry},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHostile(t, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
				if strings.Contains(r.URL.Path, "/manifests/") {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					_, _ = io.WriteString(w, tc.body)
					return true
				}
				return false
			})
			_, err := New(Options{LoopbackRegistries: []string{h.host}, ErrorTTL: -1}).Inspect(context.Background(), Request{Image: h.host + "/app:1"})
			if !errors.Is(err, tc.want) {
				t.Errorf("%v, want %v", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error carries the body: %v", err)
			}
		})
	}
}

// TestDeniedNetworks: a private network the config denies is refused after
// DNS like loopback is; others private addresses are allowed.
func TestDeniedNetworks(t *testing.T) {
	t.Parallel()
	g := newGuard(&Options{DeniedNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for addr, refused := range map[string]bool{
		"10.1.2.3:443":          true,
		"[::ffff:10.1.2.3]:443": true,
		"192.168.1.10:443":      false,
		"172.16.0.1:443":        false,
		"127.0.0.1:443":         true,
		"[::1]:443":             true,
		"0.0.0.0:443":           true,
		"169.254.169.254:80":    true,
		"[fe80::1]:443":         true,
		"100.100.100.200:80":    true,
		"93.184.216.34:443":     false,
	} {
		if err := g.control("tcp", addr, nil); errors.Is(err, ErrRefused) != refused {
			t.Errorf("%s: %v, want refused=%v", addr, err, refused)
		}
	}
}
