package imageconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The network rules of image inspection (docs/operate/security.md): an image
// reference is written by whoever creates a pod, so without them podgrace
// would connect wherever a pod author points it, from inside the cluster.
//
//   - Loopback, link-local (cloud metadata lives there: 169.254.169.254),
//     unspecified and multicast addresses, and the metadata addresses that
//     are not link-local (fd00:ec2::254, 100.100.100.200), are always refused.
//     They are checked on the address each connection dials, after DNS
//     resolution, so a name that resolves there (metadata.google.internal)
//     and a redirect that leads there are refused too.
//   - Options.DeniedNetworks adds CIDRs to that list; private (RFC 1918,
//     ULA) addresses are allowed otherwise: in-cluster registries and VPC
//     endpoints live there.
//   - Plain HTTP only to the registries Options.InsecureRegistries names,
//     on every request, redirects included.
//   - Options.AllowedRegistries / DeniedRegistries pick the registries an
//     image may name at all.
//   - No response body reaches an error text (registry error bodies are
//     reduced to their error codes), and no response is read past
//     maxResponseBytes.

// ErrRefused is the error of a reference that names a registry, or of a
// connection that leads to an address, that the network rules refuse.
var ErrRefused = errors.New("refused by podgrace's image inspection network rules")

// alwaysRefused lists the metadata addresses that are neither loopback nor
// link-local.
var alwaysRefused = []netip.Prefix{
	netip.MustParsePrefix("fd00:ec2::254/128"),      // AWS IMDS over IPv6
	netip.MustParsePrefix("100.100.100.200/32"),     // Alibaba Cloud metadata
	netip.MustParsePrefix("0.0.0.0/8"),              // "this network": 0.0.0.0 dials loopback
	netip.MustParsePrefix("255.255.255.255/32"),     // broadcast
	netip.MustParsePrefix("::ffff:169.254.0.0/112"), // IPv4-mapped link-local, belt and braces
}

// metadataHosts are the names of metadata services: refused before DNS,
// so that they are refused even where a proxy resolves names.
var metadataHosts = map[string]bool{
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"metadata":                   true,
	"instance-data":              true, // AWS
	"instance-data.ec2.internal": true,
}

// maxResponseBytes bounds every response body read from a registry
// (go-containerregistry alone accepts manifests up to 100 MiB). It is the
// config blob bound: a manifest is far smaller than its config.
const maxResponseBytes = maxConfigSize

// guard applies the network rules.
type guard struct {
	loopback   map[netip.AddrPort]bool // Options.LoopbackRegistries
	denied     []netip.Prefix
	insecure   map[string]bool
	allowed    []string
	deniedRegs []string
}

func newGuard(o *Options) *guard {
	g := &guard{loopback: map[netip.AddrPort]bool{}, insecure: map[string]bool{}, allowed: o.AllowedRegistries, deniedRegs: o.DeniedRegistries}
	for _, r := range o.LoopbackRegistries {
		if ap, err := netip.ParseAddrPort(r); err == nil && ap.Addr().IsLoopback() {
			g.loopback[ap] = true
			g.insecure[r] = true
		}
	}
	for _, p := range o.DeniedNetworks {
		g.denied = append(g.denied, p.Masked())
	}
	for _, r := range o.InsecureRegistries {
		g.insecure[strings.ToLower(r)] = true
	}
	return g
}

// checkRegistry applies the allow and deny lists to the registry an image
// reference names (host or host:port).
func (g *guard) checkRegistry(reg string) error {
	for _, p := range g.deniedRegs {
		if matchRegistry(p, reg) {
			return fmt.Errorf("%w: registry %s is in deniedRegistries", ErrRefused, reg)
		}
	}
	if len(g.allowed) == 0 {
		return nil
	}
	for _, p := range g.allowed {
		if matchRegistry(p, reg) {
			return nil
		}
	}
	return fmt.Errorf("%w: registry %s is not in allowedRegistries", ErrRefused, reg)
}

// matchRegistry reports whether pattern (host, host:port or *.domain with an
// optional port) names reg. A pattern without a port matches any port;
// docker.io names Docker Hub, as index.docker.io does.
func matchRegistry(pattern, reg string) bool {
	pattern, reg = strings.ToLower(pattern), strings.ToLower(reg)
	if reg == "index.docker.io" && (pattern == "docker.io" || pattern == "registry-1.docker.io") {
		return true
	}
	if pattern == reg {
		return true
	}
	host, port := splitHostPort(reg)
	phost, pport := splitHostPort(pattern)
	if pport != "" && pport != port {
		return false
	}
	if suffix, ok := strings.CutPrefix(phost, "*"); ok {
		return strings.HasSuffix(host, suffix)
	}
	return phost == host
}

func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return strings.Trim(h, "[]"), p
	}
	return strings.Trim(s, "[]"), ""
}

// checkAddr refuses the addresses of the rules above. port is 0 when the
// check runs before a connection (on a URL's literal address).
func (g *guard) checkAddr(a netip.Addr, port uint16) error {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		if g.loopback[netip.AddrPortFrom(a, port)] || (port == 0 && len(g.loopback) > 0) {
			return nil
		}
		return fmt.Errorf("%w: %s is a loopback address", ErrRefused, a)
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is a link-local address (cloud metadata lives there)", ErrRefused, a)
	case a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: %s is not a registry address", ErrRefused, a)
	}
	for _, p := range alwaysRefused {
		if p.Contains(a) {
			return fmt.Errorf("%w: %s is a metadata or reserved address", ErrRefused, a)
		}
	}
	for _, p := range g.denied {
		if p.Contains(a) {
			return fmt.Errorf("%w: %s is in deniedNetworks (%s)", ErrRefused, a, p)
		}
	}
	return nil
}

// control is the net.Dialer hook: it sees the resolved address of every
// connection, redirects and token endpoints included.
func (g *guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unexpected dial address %q", ErrRefused, address)
	}
	return g.checkAddr(ap.Addr(), ap.Port())
}

// checkRequest applies the rules a request's URL can be judged by before
// any connection: the scheme and the names and literal addresses that are
// refused anyway (the only check that holds behind a proxy, which resolves
// names itself).
func (g *guard) checkRequest(r *http.Request) error {
	host := strings.ToLower(r.URL.Host)
	switch r.URL.Scheme {
	case "https":
	case "http":
		if !g.insecure[host] {
			return fmt.Errorf("%w: plain HTTP to %s, which insecureRegistries does not name", ErrRefused, host)
		}
	default:
		return fmt.Errorf("%w: scheme %q", ErrRefused, r.URL.Scheme)
	}
	name := strings.TrimSuffix(strings.ToLower(r.URL.Hostname()), ".")
	if metadataHosts[name] {
		return fmt.Errorf("%w: %s is a cloud metadata service", ErrRefused, name)
	}
	if a, err := netip.ParseAddr(name); err == nil {
		return g.checkAddr(a, 0)
	}
	return nil
}

// transport returns the guarded transport: base (the default one when nil,
// dialing through the guard) wrapped in the per-request checks.
func (g *guard) transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = g.dialingTransport()
	}
	return &guardedTransport{g: g, next: base}
}

// dialingTransport is go-containerregistry's default transport whose
// direct connections dial through the guard. A proxy from the environment
// (HTTPS_PROXY) is still dialed: it is the operator's, and names it
// resolves are checked by checkRequest only.
func (g *guard) dialingTransport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	proxy := t.Proxy
	proxies := map[string]bool{}
	if proxy != nil {
		for _, u := range []string{"https://registry.invalid/", "http://registry.invalid/"} {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			if p, err := proxy(req); err == nil && p != nil {
				proxies[canonicalAddr(p.Host, p.Scheme)] = true
			}
		}
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxies[addr] {
			return plain.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	return t
}

func canonicalAddr(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "443")
	}
	return net.JoinHostPort(host, "80")
}

type guardedTransport struct {
	g    *guard
	next http.RoundTripper
}

func (t *guardedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.g.checkRequest(r); err != nil {
		return nil, err
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		resp.Body = sanitizedBody(resp.Body)
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		return resp, nil
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBytes}
	return resp, nil
}

// errorCode is a registry error code (MANIFEST_UNKNOWN, DENIED …): the only
// part of an error body an error text may carry.
var errorCode = regexp.MustCompile(`^[A-Z_]{1,64}$`)

// sanitizedBody replaces an error response's body with its registry error
// codes alone: the message, detail, and any body that is not a registry
// error (an internal service's page reached through a redirect) never
// reach an error text, a log line or a warning.
func sanitizedBody(rc io.ReadCloser) io.ReadCloser {
	defer func() { _ = rc.Close() }()
	raw, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
	var in struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	var out struct {
		Errors []map[string]string `json:"errors,omitempty"`
	}
	if json.Unmarshal(raw, &in) == nil {
		for _, e := range in.Errors {
			if errorCode.MatchString(e.Code) && len(out.Errors) < 4 {
				out.Errors = append(out.Errors, map[string]string{"code": e.Code})
			}
		}
	}
	if len(out.Errors) == 0 {
		return io.NopCloser(bytes.NewReader(nil))
	}
	b, _ := json.Marshal(out)
	return io.NopCloser(bytes.NewReader(b))
}

// errResponseTooLarge: a response body longer than maxResponseBytes.
var errResponseTooLarge = fmt.Errorf("%w: response body over %d bytes", ErrTooLarge, maxResponseBytes)

// limitedBody fails a read past its limit instead of truncating silently.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
