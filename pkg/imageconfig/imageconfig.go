package imageconfig

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/singleflight"

	"github.com/podgrace/podgrace/pkg/policy"
)

// Config is the part of an OCI/Docker image config podgrace reads: what
// runs (Entrypoint, Cmd) and Docker's SHELL, which multi-arch platforms must
// agree on too. Nothing else of the config is kept, cached or returned.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Shell      []string
}

// MaxArgvBytes bounds the argv podgrace copies from an image into a pod:
// Entrypoint, Cmd and Shell together, each string counted with one byte
// for its terminating NUL as the kernel counts argv. Real commands are a
// few hundred bytes; an image beyond it is left alone with ErrTooLarge
// (a warning), so that a hostile config cannot blow up the cache or the
// admission response (docs/operate/security.md).
const MaxArgvBytes = 16 << 10

// argvBytes is the size MaxArgvBytes bounds.
func (c *Config) argvBytes() int64 {
	var n int64
	for _, l := range [][]string{c.Entrypoint, c.Cmd, c.Shell} {
		for _, s := range l {
			n += int64(len(s)) + 1
		}
	}
	return n
}

// Result is what an inspection found. Its slices belong to the caller.
type Result struct {
	Config Config
	// Digest is the digest the reference resolved to (the index digest for a
	// multi-arch image, the manifest digest otherwise): what the caller pins
	// the pod's image to, so the command always matches the image that runs.
	Digest string
	// Pinned is Request.Image pinned to Digest, with the tag dropped and the
	// rest spelled as the pod spec spelled it: "reg/app:1.2" becomes
	// "reg/app@sha256:…", "nginx" becomes "nginx@sha256:…". An image already
	// referenced by digest is returned as written. See the package comment
	// for why the tag is dropped.
	Pinned string
	// FromCache is true when no registry request was made for this answer.
	FromCache bool
}

// Options configures an Inspector. The zero value is usable: every zero
// field takes its default.
type Options struct {
	// Timeout bounds one Inspect, on top of the caller's context. Default 2s
	// (docs/design.md §6: the whole admission has 5s).
	Timeout time.Duration
	// TagTTL is how long a tag→digest answer is trusted. After it the tag
	// is re-resolved with a manifest HEAD; the config is fetched again only
	// if the digest changed. Default 1m; negative disables the tag cache.
	TagTTL time.Duration
	// ErrorTTL is how long a failed registry lookup is remembered, so a down
	// or refusing registry is asked once per ErrorTTL rather than once per
	// pod. A registry that did not answer in time or could not be reached
	// at all is remembered as down for as long, for every image it serves:
	// an outage costs one deadline per registry per ErrorTTL, not one per
	// image. Default 10s; negative disables both.
	ErrorTTL time.Duration
	// MaxEntries bounds each cache (digest→config, tag→digest, errors).
	// Default 1000.
	MaxEntries int
	// CacheBytes bounds the memory the digest cache's configs and indexes
	// hold (an estimate: strings, slices and per-entry overhead). Default
	// DefaultCacheBytes.
	CacheBytes int64
	// Transport carries the registry requests (tests, metrics). Default:
	// go-containerregistry's remote.DefaultTransport dialing through the
	// network rules (guard.go). A Transport given here is still wrapped in
	// the per-request rules (scheme, metadata names, literal addresses,
	// error bodies, response size) but dials as it likes.
	Transport http.RoundTripper
	// AllowedRegistries and DeniedRegistries pick the registries an image
	// may name (host, host:port or *.domain; see matchRegistry). Empty
	// AllowedRegistries allows any registry not denied.
	AllowedRegistries, DeniedRegistries []string
	// InsecureRegistries are spoken to over plain HTTP (host or host:port
	// as references write it); every other registry is HTTPS only.
	InsecureRegistries []string
	// DeniedNetworks are refused on top of the loopback, link-local and
	// metadata addresses that are always refused.
	DeniedNetworks []netip.Prefix
	// LoopbackRegistries are loopback registries ("127.0.0.1:port") that
	// may be reached, over plain HTTP: that address and port only, any
	// other loopback address or port stays refused. It exists for tests,
	// whose registries run in-process on loopback; no config key or flag
	// sets it, so a deployed podgrace always refuses loopback.
	LoopbackRegistries []string
	// Metrics receives lookups, cache hits and errors. Default: none.
	Metrics Metrics
}

// Defaults of Options: the cluster config's (policy.Default), declared there once.
var (
	DefaultTimeout    = policy.Default().ImageInspection.Timeout.Duration
	DefaultTagTTL     = policy.Default().ImageInspection.TagTTL.Duration
	DefaultErrorTTL   = policy.Default().ImageInspection.ErrorTTL.Duration
	DefaultMaxEntries = policy.Default().ImageInspection.CacheSize
	DefaultCacheBytes = defaultCacheBytes()
)

func defaultCacheBytes() int64 {
	q := policy.Default().ImageInspection.CacheBytes
	return q.Value()
}

// maxConfigSize bounds the config blob we are willing to read. Real configs
// are a few KiB (tens with a long history); the manifest states the size,
// so a hostile one is refused before any byte is read. Every other
// response is bounded by it too (maxResponseBytes).
const maxConfigSize = 4 << 20

// maxIndexChildren bounds the manifests of an index podgrace considers:
// real multi-arch images have a few platforms and as many attestations.
const maxIndexChildren = 256

// Request says what to inspect.
type Request struct {
	// Image is the reference as written in the pod spec: a tag or a digest,
	// with or without a registry (none means Docker Hub).
	Image string
	// Platform optionally picks one platform of a multi-arch image, from
	// the pod's kubernetes.io/arch (and kubernetes.io/os) node selector. An
	// empty OS means linux. Without it every linux platform must agree.
	Platform *v1.Platform
	// Keychain supplies registry credentials; nil means anonymous.
	Keychain authn.Keychain
}

// Inspector reads image configs from registries, with caches shared by all
// its callers. It is safe for concurrent use; make one per process.
type Inspector struct {
	opts       Options
	metrics    Metrics
	guard      *guard
	remoteOpts []remote.Option
	now        func() time.Time // the caches' clock; tests replace it
	credKey    []byte           // HMAC key for credential identities

	nodes *cache[*node]    // identity+repo@digest → config or index, no expiry
	tags  *cache[tagEntry] // identity+tag → digest, TagTTL
	errs  *cache[errEntry] // lookup key → error, ErrorTTL
	down  *cache[errEntry] // registry host → why it is down, ErrorTTL

	lookups singleflight.Group // one registry lookup per lookup key
	fetches singleflight.Group // one manifest+config fetch per node key
}

type tagEntry struct {
	digest  string
	expires time.Time
}

type errEntry struct {
	err     error
	expires time.Time
}

// node is what the digest cache holds for one manifest: an image's config
// and platform, or an index's children.
type node struct {
	index    bool
	children []child     // index
	config   Config      // image
	platform v1.Platform // image: from its config
	// argvBytes is set, and config empty, for an image whose argv exceeds
	// MaxArgvBytes: what is remembered of it is that it is too large.
	argvBytes int64
}

// tooLarge is ErrTooLarge for an image whose argv exceeds MaxArgvBytes.
func (n *node) tooLarge() error {
	if n.argvBytes == 0 {
		return nil
	}
	return fmt.Errorf("%w: Entrypoint, Cmd and Shell hold %d bytes, more than the %d podgrace copies into a pod", ErrTooLarge, n.argvBytes, MaxArgvBytes)
}

// size estimates the memory a node holds, for the digest cache's byte bound.
func (n *node) size() int64 {
	const str, slice = 16, 24 // string and slice headers
	sz := int64(unsafe.Sizeof(node{}))
	for _, l := range [][]string{n.config.Entrypoint, n.config.Cmd, n.config.Shell} {
		sz += slice
		for _, s := range l {
			sz += str + int64(len(s))
		}
	}
	sz += int64(len(n.platform.OS) + len(n.platform.Architecture) + len(n.platform.Variant))
	for _, c := range n.children {
		sz += int64(unsafe.Sizeof(c)) + int64(len(c.digest))
		if c.platform != nil {
			sz += int64(unsafe.Sizeof(*c.platform)) + int64(len(c.platform.OS)+len(c.platform.Architecture)+len(c.platform.Variant))
		}
	}
	return sz
}

// child is one entry of an index, reduced to what platform selection needs.
type child struct {
	digest      string
	image       bool         // an image manifest (not a nested index or an artifact)
	platform    *v1.Platform // nil when the index does not say
	attestation bool         // a BuildKit attestation manifest
}

// New returns an Inspector with o's settings, defaults filled in.
func New(o Options) *Inspector {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TagTTL == 0 {
		o.TagTTL = DefaultTagTTL
	}
	if o.ErrorTTL == 0 {
		o.ErrorTTL = DefaultErrorTTL
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	g := newGuard(&o)
	i := &Inspector{
		opts:    o,
		metrics: o.Metrics,
		now:     time.Now,
		credKey: make([]byte, 32),
		guard:   g,
		nodes:   newSizedLRU(o.MaxEntries, o.CacheBytes, (*node).size),
		tags:    newLRU[tagEntry](o.MaxEntries),
		errs:    newLRU[errEntry](o.MaxEntries),
		down:    newLRU[errEntry](o.MaxEntries),
	}
	if i.metrics == nil {
		i.metrics = nopMetrics{}
	}
	_, _ = rand.Read(i.credKey) // never fails (crypto/rand panics rather than return an error)
	i.remoteOpts = []remote.Option{
		remote.WithTransport(g.transport(o.Transport)),
		remote.WithUserAgent("podgrace"),
		// At most one quick retry: the whole inspection has Timeout, and a
		// failure is remembered for ErrorTTL anyway. 429 is not retried:
		// hammering a rate limit makes it worse.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 1, Steps: 2}),
		remote.WithRetryStatusCodes(http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout),
	}
	return i
}

// query is one Inspect's normalized request.
type query struct {
	ref      name.Reference
	platform *v1.Platform // OS defaulted to linux; nil for any
	ident    string       // credential identity: "anonymous" or an HMAC of the credential
	key      string       // lookup key: identity, reference, platform
}

func (q *query) tagKey() string { return q.ident + "\x00" + q.ref.Name() }

func (q *query) nodeKey(digest string) string {
	return q.ident + "\x00" + q.ref.Context().Name() + "@" + digest
}

// Inspect reads the Entrypoint, Cmd, Shell and User that r.Image would run
// with, and the digest it resolved to. It answers from the caches when it
// can, asks the registry once for any number of identical concurrent
// requests otherwise, and never takes longer than Options.Timeout. Every
// error carries one of the Err* sentinels (see ErrorKind) and means "do not
// rewrite".
func (i *Inspector) Inspect(ctx context.Context, r Request) (Result, error) {
	start := time.Now()
	res, err := i.inspect(ctx, r)
	switch {
	case err != nil:
		err = fmt.Errorf("image %q: %w", r.Image, err)
		i.metrics.Error(ErrorKind(err))
		i.metrics.ObserveLookup(LookupError, time.Since(start))
		return Result{}, err
	case res.FromCache:
		i.metrics.ObserveLookup(LookupHit, time.Since(start))
	default:
		i.metrics.ObserveLookup(LookupMiss, time.Since(start))
	}
	res.Config = Config{
		Entrypoint: slices.Clone(res.Config.Entrypoint),
		Cmd:        slices.Clone(res.Config.Cmd),
		Shell:      slices.Clone(res.Config.Shell),
	}
	res.Pinned = pin(r.Image, res.Digest)
	return res, nil
}

func (i *Inspector) inspect(ctx context.Context, r Request) (Result, error) {
	ref, err := i.parse(r.Image)
	if err != nil {
		return Result{}, err
	}
	parent, bounded := ctx.Deadline()
	ctx, cancel := context.WithTimeout(ctx, i.opts.Timeout)
	defer cancel()
	own, _ := ctx.Deadline()
	ownDeadline := !bounded || parent.After(own) // Timeout, not the caller, bounds this wait

	auth, ident, err := i.identify(ctx, ref.Context(), r.Keychain)
	if err != nil {
		return Result{}, err
	}
	q := &query{ref: ref, platform: normalizePlatform(r.Platform), ident: ident}
	q.key = q.ident + "\x00" + ref.Name() + "\x00" + platformString(q.platform)

	// 1. The caches alone.
	if res, err := (&session{i: i, q: q}).evaluate(); !errors.Is(err, errMiss) {
		res.FromCache = true
		return res, err
	}
	// 2. A failure remembered for ErrorTTL.
	if e, ok := i.errs.get(q.key); ok {
		if i.now().Before(e.expires) {
			i.metrics.CacheHit(CacheError)
			return Result{}, fmt.Errorf("%w (cached)", e.err)
		}
		i.errs.remove(q.key)
	}
	// 2b. A registry remembered as down (another image's lookup timed out
	// or could not connect): do not wait another deadline to learn it again.
	if e, ok := i.down.get(ref.Context().RegistryStr()); ok {
		if i.now().Before(e.expires) {
			i.metrics.CacheHit(CacheError)
			return Result{}, fmt.Errorf("%w (registry %s remembered as down)", e.err, ref.Context().RegistryStr())
		}
		// Expired: this lookup probes the registry. The others keep
		// failing at once while it runs, so an interval costs one deadline
		// however many pods are in flight; it clears the mark if the
		// registry answers, renews it for ErrorTTL if not.
		i.down.add(ref.Context().RegistryStr(), errEntry{err: e.err, expires: i.now().Add(i.opts.Timeout)})
	}
	// 3. The registry, once for all identical concurrent requests. The
	// lookup runs detached from this caller so that one caller going away
	// does not fail the others; it has its own Timeout.
	ch := i.lookups.DoChan(q.key, func() (any, error) {
		return i.lookup(context.WithoutCancel(ctx), q, auth)
	})
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return Result{}, ctx.Err()
		}
		err := fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		if ownDeadline && i.opts.ErrorTTL > 0 {
			// The registry did not answer within Timeout. The lookup, which
			// has a deadline of its own, will remember it too, but an
			// instant later: the next image must not wait another Timeout.
			i.down.add(ref.Context().RegistryStr(), errEntry{err: err, expires: i.now().Add(i.opts.ErrorTTL)})
		}
		return Result{}, err
	case out := <-ch:
		if out.Err != nil {
			return Result{}, out.Err
		}
		return out.Val.(Result), nil
	}
}

// lookup asks the registry what the caches could not answer, fills the
// caches, and remembers a failure for ErrorTTL.
func (i *Inspector) lookup(ctx context.Context, q *query, auth authn.Authenticator) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, i.opts.Timeout)
	defer cancel()
	puller, err := remote.NewPuller(append(slices.Clip(i.remoteOpts), remote.WithAuth(auth))...)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrRegistry, err)
	}
	res, err := (&session{i: i, q: q, ctx: ctx, puller: puller}).evaluate()
	reg := q.ref.Context().RegistryStr()
	if err != nil {
		err = classify(ctx, err)
		if cacheable(err) && i.opts.ErrorTTL > 0 {
			e := errEntry{err: err, expires: i.now().Add(i.opts.ErrorTTL)}
			i.errs.add(q.key, e)
			if registryDown(err) {
				i.down.add(reg, e)
			}
		}
		return res, err
	}
	i.down.remove(reg) // it answered: up again
	return res, nil
}

// parse reads an image reference and applies the registry rules: the
// allow and deny lists, and plain HTTP only for the registries named.
func (i *Inspector) parse(image string) (name.Reference, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	reg := ref.Context().RegistryStr()
	if err := i.guard.checkRegistry(reg); err != nil {
		return nil, err
	}
	if i.guard.insecure[reg] {
		return name.ParseReference(image, name.Insecure)
	}
	return ref, nil
}

const anonymous = "anonymous"

// identify resolves the credential r.Keychain offers for repo and names it.
// The name is part of every cache key: what one credential was allowed to
// read is never handed to a request made with another (or with none). It is
// an HMAC under a per-process random key, so the key says nothing about the
// secret even if it were logged. The credential itself is returned as a
// static authenticator, so the requests use exactly what was named.
func (i *Inspector) identify(ctx context.Context, repo name.Repository, kc authn.Keychain) (authn.Authenticator, string, error) {
	if kc == nil {
		return authn.Anonymous, anonymous, nil
	}
	a, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, "", fmt.Errorf("%w: resolving credentials for %s: %w", ErrUnauthorized, repo.RegistryStr(), err)
	}
	if a == authn.Anonymous {
		return a, anonymous, nil
	}
	cfg, err := authn.Authorization(ctx, a)
	if err != nil {
		return nil, "", fmt.Errorf("%w: reading credentials for %s: %w", ErrUnauthorized, repo.RegistryStr(), err)
	}
	if cfg == nil || *cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, anonymous, nil
	}
	h := hmac.New(sha256.New, i.credKey)
	for _, f := range []string{cfg.Username, cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken} {
		writeField(h, f)
	}
	return authn.FromConfig(*cfg), hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// writeField writes a length-prefixed string, so that field boundaries
// cannot be shifted to make two credentials hash alike.
func writeField(h hash.Hash, s string) {
	h.Write(binary.AppendUvarint(nil, uint64(len(s))))
	h.Write([]byte(s))
}

// pin returns image pinned to digest: the tag (if any) dropped, the rest
// kept as written. A digest reference is already pinned.
func pin(image, digest string) string {
	if strings.Contains(image, "@") {
		return image
	}
	repo := image
	if c := strings.LastIndexByte(image, ':'); c > strings.LastIndexByte(image, '/') {
		repo = image[:c]
	}
	return repo + "@" + digest
}

func normalizePlatform(p *v1.Platform) *v1.Platform {
	if p == nil {
		return nil
	}
	n := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	if n.OS == "" {
		n.OS = "linux"
	}
	return &n
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
