package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// errMiss is a session without a context needing the registry.
var errMiss = errors.New("not in cache")

// attestationAnnotation marks BuildKit's attestation manifests in an index
// (their platform is unknown/unknown); they are not runnable images.
const attestationAnnotation = "vnd.docker.reference.type"

// indexFetchJobs bounds the parallel per-platform fetches of one index.
const indexFetchJobs = 4

// session answers one query. Without a context it only reads the caches and
// returns errMiss where it would need the registry; with one, it fetches
// what is missing and fills the caches. The same code serves both, so a
// cached answer is computed exactly as a fetched one.
type session struct {
	i      *Inspector
	q      *query
	ctx    context.Context // nil: caches only
	puller *remote.Puller
	top    *remote.Descriptor // the manifest a tag GET returned, reused by node
}

// evaluate resolves the reference to a digest and the digest to a config:
// an image's own, or the one every selected linux platform of an index
// agrees on.
func (s *session) evaluate() (Result, error) {
	digest, err := s.resolve()
	if err != nil {
		return Result{}, err
	}
	n, err := s.node(digest)
	if err != nil {
		return Result{}, err
	}
	if !n.index {
		if !isLinux(n.platform.OS) {
			return Result{}, fmt.Errorf("%w: the image is for %s", ErrNotLinux, platformString(&n.platform))
		}
		if err := n.tooLarge(); err != nil {
			return Result{}, err
		}
		return Result{Config: n.config, Digest: digest}, nil
	}
	cfg, err := s.agree(n.children)
	if err != nil {
		return Result{}, err
	}
	return Result{Config: cfg, Digest: digest}, nil
}

// resolve returns the digest the reference points at. A tag is answered
// from the tag cache while fresh; once stale, a HEAD says whether it moved
// (the digest cache then still holds the config); a tag never seen is
// fetched with a GET whose manifest node() reuses.
func (s *session) resolve() (string, error) {
	if d, ok := s.q.ref.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	key := s.q.tagKey()
	e, seen := s.i.tags.get(key)
	if seen && s.i.now().Before(e.expires) {
		s.i.metrics.CacheHit(CacheTag)
		return e.digest, nil
	}
	if s.ctx == nil {
		return "", errMiss
	}
	var digest v1.Hash
	if seen {
		desc, err := s.puller.Head(s.ctx, s.q.ref)
		if err != nil {
			return "", err
		}
		digest = desc.Digest
	} else {
		desc, err := s.puller.Get(s.ctx, s.q.ref)
		if err != nil {
			return "", err
		}
		s.top, digest = desc, desc.Digest
	}
	if s.i.opts.TagTTL > 0 {
		s.i.tags.add(key, tagEntry{digest: digest.String(), expires: s.i.now().Add(s.i.opts.TagTTL)})
	}
	return digest.String(), nil
}

// node returns what a manifest digest holds, from the digest cache or, once
// for any number of concurrent sessions, from the registry.
func (s *session) node(digest string) (*node, error) {
	key := s.q.nodeKey(digest)
	if n, ok := s.i.nodes.get(key); ok {
		s.i.metrics.CacheHit(CacheConfig)
		return n, nil
	}
	if s.ctx == nil {
		return nil, errMiss
	}
	v, err, _ := s.i.fetches.Do(key, func() (any, error) {
		n, err := s.fetchNode(digest)
		if err != nil {
			return nil, err
		}
		s.i.nodes.add(key, n)
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*node), nil
}

// fetchNode reads one manifest and, for an image, its config blob. Layers
// are never touched.
func (s *session) fetchNode(digest string) (*node, error) {
	desc := s.top
	if desc == nil || desc.Digest.String() != digest {
		d, err := s.puller.Get(s.ctx, s.q.ref.Context().Digest(digest))
		if err != nil {
			return nil, err
		}
		desc = d
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("%w: reading index %s: %w", ErrRegistry, digest, err)
		}
		if len(im.Manifests) > maxIndexChildren {
			return nil, fmt.Errorf("%w: index %s lists %d manifests, more than the %d podgrace considers", ErrTooLarge, digest, len(im.Manifests), maxIndexChildren)
		}
		n := &node{index: true, children: make([]child, 0, len(im.Manifests))}
		for _, m := range im.Manifests {
			c := child{
				digest:      m.Digest.String(),
				image:       m.MediaType.IsImage(),
				attestation: m.Annotations[attestationAnnotation] == "attestation-manifest",
			}
			if m.Platform != nil {
				c.platform = &v1.Platform{OS: short(m.Platform.OS), Architecture: short(m.Platform.Architecture), Variant: short(m.Platform.Variant)}
			}
			n.children = append(n.children, c)
		}
		return n, nil
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, err
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("%w: reading manifest %s: %w", ErrRegistry, digest, err)
		}
		if m.Config.Size > maxConfigSize {
			return nil, fmt.Errorf("%w: config blob of %s is %d bytes, more than the %d read", ErrRegistry, digest, m.Config.Size, maxConfigSize)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		// Only the fields podgrace reads are kept (the parsed config, its
		// history, env and labels are garbage once this returns), and an
		// argv beyond MaxArgvBytes only as its size.
		n := &node{
			config: Config{
				Entrypoint: cf.Config.Entrypoint,
				Cmd:        cf.Config.Cmd,
				Shell:      cf.Config.Shell,
			},
			platform: v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}
		if b := n.config.argvBytes(); b > MaxArgvBytes {
			n.config, n.argvBytes = Config{}, b
		}
		n.platform = v1.Platform{OS: short(n.platform.OS), Architecture: short(n.platform.Architecture), Variant: short(n.platform.Variant)}
		return n, nil
	default:
		return nil, fmt.Errorf("%w: %s is a %q, not an image or an index", ErrRegistry, digest, short(string(desc.MediaType)))
	}
}

// agree picks the linux images of an index that the query's platform
// selects (all of them without one) and returns the config they agree on.
// Attestation manifests, nested indexes and other artifacts are skipped and
// never fetched; so are children whose platform is not linux. A child the
// index gives no platform is judged by its config's.
func (s *session) agree(children []child) (Config, error) {
	want := s.q.platform
	if want != nil && want.OS != "linux" {
		return Config{}, fmt.Errorf("%w: the pod asks for %s", ErrNotLinux, platformString(want))
	}
	var candidates []child
	sawLinux := false
	for _, c := range children {
		if c.attestation || !c.image {
			continue
		}
		if c.platform != nil {
			if c.platform.OS != "linux" {
				continue
			}
			sawLinux = true
			if want != nil && !platformMatches(*c.platform, *want) {
				continue
			}
		}
		candidates = append(candidates, c)
	}
	nodes, err := s.nodesOf(candidates)
	if err != nil {
		return Config{}, err
	}

	type pick struct {
		platform v1.Platform
		config   Config
	}
	var picks []pick
	for k, c := range candidates {
		p := nodes[k].platform
		if c.platform != nil {
			p = *c.platform
		} else {
			if !isLinux(p.OS) {
				continue
			}
			sawLinux = true
			if want != nil && !platformMatches(p, *want) {
				continue
			}
		}
		if err := nodes[k].tooLarge(); err != nil {
			return Config{}, err
		}
		picks = append(picks, pick{platform: p, config: nodes[k].config})
	}
	switch {
	case len(picks) == 0 && !sawLinux:
		return Config{}, fmt.Errorf("%w: the index has no linux image", ErrNotLinux)
	case len(picks) == 0:
		return Config{}, fmt.Errorf("%w: the index has no image for %s", ErrNotFound, platformString(want))
	}
	first := picks[0]
	for _, o := range picks[1:] {
		if !sameArgv(first.config, o.config) {
			return Config{}, fmt.Errorf("%w: %s has Entrypoint %q Cmd %q Shell %q, %s has Entrypoint %q Cmd %q Shell %q",
				ErrPlatformsDisagree,
				platformString(&first.platform), first.config.Entrypoint, first.config.Cmd, first.config.Shell,
				platformString(&o.platform), o.config.Entrypoint, o.config.Cmd, o.config.Shell)
		}
	}
	return first.config, nil
}

// nodesOf returns the nodes of several children: from the caches one by one,
// or fetched a few at a time.
func (s *session) nodesOf(children []child) ([]*node, error) {
	out := make([]*node, len(children))
	if s.ctx == nil || len(children) < 2 {
		for k, c := range children {
			n, err := s.node(c.digest)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	}
	var g errgroup.Group
	g.SetLimit(indexFetchJobs)
	for k, c := range children {
		g.Go(func() error {
			n, err := s.node(c.digest)
			out[k] = n
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// sameArgv reports whether two configs would run the same argv.
func sameArgv(a, b Config) bool {
	return slices.Equal(a.Entrypoint, b.Entrypoint) && slices.Equal(a.Cmd, b.Cmd) && slices.Equal(a.Shell, b.Shell)
}

// isLinux accepts an empty OS too: the OCI spec requires the field, but an
// image old enough to lack it predates Windows containers.
func isLinux(os string) bool { return os == "linux" || os == "" }

// platformMatches reports whether have satisfies want (whose OS is set).
// Missing architecture or variant in want match anything; arm64 without a
// variant is arm64/v8, as containerd sees it.
func platformMatches(have, want v1.Platform) bool {
	return have.OS == want.OS &&
		(want.Architecture == "" || have.Architecture == want.Architecture) &&
		(want.Variant == "" || variant(have) == variant(want))
}

func variant(p v1.Platform) string {
	if p.Architecture == "arm64" && p.Variant == "" {
		return "v8"
	}
	return p.Variant
}

// short cuts a string a registry chose (a platform, a media type) to a
// length that fits an error text and a cache entry.
func short(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
