// Command image builds podgrace's container image without a Docker engine:
// the image the Dockerfile describes (a static podgrace binary on distroless
// static, user 65532, exec-form entrypoint), written with go-containerregistry
// as an OCI image layout tarball that `ctr images import`, `skopeo copy
// oci-archive:` and `crane push` read.
//
//	go run ./hack/image -binary bin/podgrace -o dist/podgrace-image.tar -ref ghcr.io/podgrace/podgrace:dev
//
// With -layout and -binaries it writes a release's multi-platform image
// instead: an OCI image index (one image per linux architecture) as an OCI
// image layout directory, which `crane push --index`-style tools and
// `make publish` read (docs/develop/release.md):
//
//	go run ./hack/image -layout dist/image -binaries amd64=dist/bin/linux-amd64/podgrace,arm64=dist/bin/linux-arm64/podgrace -ref ghcr.io/podgrace/podgrace:v0.2.0
//
// distroless cannot be pulled here, so its nonroot variant is rebuilt from
// an empty image: /etc/passwd and /etc/group with root, nobody and nonroot
// (65532), /home/nonroot, /tmp, and CA certificates (the webhook reads image
// configs from registries over TLS). The CA bundle comes from the Go module
// golang.org/x/crypto/x509roots/fallback at the version go.mod pins (the
// roots Mozilla trusts without constraint), not from the build host, and
// every timestamp is -created (SOURCE_DATE_EPOCH; the Unix epoch by
// default): the same commit gives the same digests on any machine.
package main

import (
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/podgrace/podgrace/internal/ocilayout"
)

// What the Dockerfile says; image_test.go checks the two agree.
var (
	entrypoint = []string{"/podgrace"}
	command    = []string{"webhook"}
)

const (
	nonrootUser = "65532:65532"
	binaryPath  = "/podgrace"
	caBundle    = "/etc/ssl/certs/ca-certificates.crt"
)

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/podgrace", "static podgrace binary to put at /podgrace (make build)")
	flag.StringVar(&o.out, "o", "dist/podgrace-image.tar", "OCI layout tarball to write")
	flag.StringVar(&o.ref, "ref", "ghcr.io/podgrace/podgrace:dev", "image reference recorded in the archive")
	flag.StringVar(&o.version, "version", "dev", "version label")
	flag.StringVar(&o.arch, "arch", "amd64", "architecture of the binary")
	flag.StringVar(&o.layoutDir, "layout", "", "write a multi-platform image index as an OCI layout directory here (with -binaries) instead of -o")
	flag.StringVar(&o.binaries, "binaries", "", "ARCH=FILE,... linux binaries of the image index (with -layout)")
	flag.StringVar(&o.created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time of the image, in Unix seconds (default SOURCE_DATE_EPOCH, else 0)")
	flag.Parse()
	if err := o.run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type options struct {
	binary, out, ref, version, arch string
	layoutDir, binaries, created    string
}

func (o *options) createdTime() (time.Time, error) {
	if o.created == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(o.created, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("creation time %q: not Unix seconds", o.created)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func (o *options) run() error {
	created, err := o.createdTime()
	if err != nil {
		return err
	}
	if o.layoutDir != "" {
		return o.runIndex(created)
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	img, err := build(bin, o.version, o.arch, created)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := ocilayout.WriteArchive(o.out, o.ref, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	info, err := os.Stat(o.out)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s, %.1f MB): %s@%s\n", o.out, o.ref, float64(info.Size())/1e6, o.ref, digest)
	return nil
}

// runIndex writes the image index of -binaries to the layout directory
// -layout (replaced), named -ref, and prints its digest.
func (o *options) runIndex(created time.Time) error {
	idx, err := o.index(created)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(o.layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(o.layoutDir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.ref})); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s, index of %s): %s@%s\n", o.layoutDir, o.ref, o.binaries, o.ref, d)
	return nil
}

// index is the OCI image index of one image per ARCH=FILE of -binaries, in
// the order given.
func (o *options) index(created time.Time) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for _, pair := range strings.Split(o.binaries, ",") {
		arch, file, ok := strings.Cut(pair, "=")
		if !ok || arch == "" || file == "" {
			return nil, fmt.Errorf("-binaries %q: want ARCH=FILE pairs joined by commas", o.binaries)
		}
		bin, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		img, err := build(bin, o.version, arch, created)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	base := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(base, adds...), nil
}

// caCertificates is the PEM bundle of the roots of
// golang.org/x/crypto/x509roots/fallback that carry no constraint (a PEM
// file cannot express one), in the module's order.
func caCertificates() []byte {
	var out []byte
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})...)
	}
	return out
}

// build returns the image: one layer and the runtime config. Every
// timestamp is created (file entries the Unix epoch), so the same binary
// gives the same digest.
func build(bin []byte, version, arch string, created time.Time) (v1.Image, error) {
	files := []ocilayout.File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: 65532},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: binaryPath, Mode: 0o755, Data: bin},
		{Path: caBundle, Mode: 0o644, Data: caCertificates()},
	}
	layer, err := ocilayout.Layer(files)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "hack/image: podgrace on a distroless-static-nonroot-like base", Created: v1.Time{Time: created}},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: entrypoint,
		Cmd:        command,
		User:       nonrootUser,
		WorkingDir: "/home/nonroot",
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"SSL_CERT_FILE=" + caBundle,
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "podgrace",
			"org.opencontainers.image.description": "Kubernetes admission webhook: preStop sleeps and exec-form commands for graceful shutdown",
			"org.opencontainers.image.source":      "https://github.com/podgrace/podgrace",
			"org.opencontainers.image.version":     version,
		},
	}
	return mutate.ConfigFile(img, cf)
}
