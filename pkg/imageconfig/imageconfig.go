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
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/singleflight"

	"github.com/podgrace/podgrace/pkg/policy"
)

// Config is the part of an OCI/Docker image config podgrace needs.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Shell      []string // Docker's SHELL (informational)
	User       string   // informational
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
	// pod. Default 10s; negative disables it.
	ErrorTTL time.Duration
	// MaxEntries bounds each cache (digest→config, tag→digest, errors).
	// Default 1000.
	MaxEntries int
	// Transport carries the registry requests (tests, metrics, proxies).
	// Default: go-containerregistry's remote.DefaultTransport.
	Transport http.RoundTripper
	// Insecure lets references use plain HTTP (name.Insecure). Registries on
	// loopback and private addresses are tried over HTTP anyway.
	Insecure bool
	// Metrics receives lookups, cache hits and errors. Default: none.
	Metrics Metrics
}

// Defaults of Options: the cluster config's (policy.Default), declared there once.
var (
	DefaultTimeout    = policy.Default().ImageInspection.Timeout.Duration
	DefaultTagTTL     = policy.Default().ImageInspection.TagTTL.Duration
	DefaultErrorTTL   = policy.Default().ImageInspection.ErrorTTL.Duration
	DefaultMaxEntries = policy.Default().ImageInspection.CacheSize
)

// maxConfigSize bounds the config blob we are willing to read. Real configs
// are a few KiB (tens with a long history); the manifest states the size,
// so a hostile one is refused before any byte is read.
const maxConfigSize = 4 << 20

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
	nameOpts   []name.Option
	remoteOpts []remote.Option
	now        func() time.Time // the caches' clock; tests replace it
	credKey    []byte           // HMAC key for credential identities

	nodes *cache[*node]    // identity+repo@digest → config or index, no expiry
	tags  *cache[tagEntry] // identity+tag → digest, TagTTL
	errs  *cache[errEntry] // lookup key → error, ErrorTTL

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
	if o.Transport == nil {
		o.Transport = remote.DefaultTransport
	}
	i := &Inspector{
		opts:    o,
		metrics: o.Metrics,
		now:     time.Now,
		credKey: make([]byte, 32),
		nodes:   newLRU[*node](o.MaxEntries),
		tags:    newLRU[tagEntry](o.MaxEntries),
		errs:    newLRU[errEntry](o.MaxEntries),
	}
	if i.metrics == nil {
		i.metrics = nopMetrics{}
	}
	_, _ = rand.Read(i.credKey) // never fails (crypto/rand panics rather than return an error)
	if o.Insecure {
		i.nameOpts = []name.Option{name.Insecure}
	}
	i.remoteOpts = []remote.Option{
		remote.WithTransport(o.Transport),
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
		User:       res.Config.User,
	}
	res.Pinned = pin(r.Image, res.Digest)
	return res, nil
}

func (i *Inspector) inspect(ctx context.Context, r Request) (Result, error) {
	ref, err := name.ParseReference(r.Image, i.nameOpts...)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	ctx, cancel := context.WithTimeout(ctx, i.opts.Timeout)
	defer cancel()

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
		return Result{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
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
	if err != nil {
		err = classify(ctx, err)
		if cacheable(err) && i.opts.ErrorTTL > 0 {
			i.errs.add(q.key, errEntry{err: err, expires: i.now().Add(i.opts.ErrorTTL)})
		}
	}
	return res, err
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
