// Command image builds podgrace's container image without a Docker engine:
// the image the Dockerfile describes (a static podgrace binary on distroless
// static, user 65532, exec-form entrypoint), written with go-containerregistry
// as an OCI image layout tarball that `ctr images import`, `skopeo copy
// oci-archive:` and `crane push` read.
//
//	go run ./hack/image -binary bin/podgrace -o dist/podgrace-image.tar -ref ghcr.io/podgrace/podgrace:dev
//
// distroless cannot be pulled here, so its nonroot variant is rebuilt from
// an empty image: /etc/passwd and /etc/group with root, nobody and nonroot
// (65532), /home/nonroot, /tmp, and the build host's CA certificates (the
// webhook reads image configs from registries over TLS).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

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

// hostCABundle is where Debian and Ubuntu (and distroless, built from
// Debian) keep the CA certificates.
var hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/podgrace", "static podgrace binary to put at /podgrace (make build)")
	flag.StringVar(&o.out, "o", "dist/podgrace-image.tar", "OCI layout tarball to write")
	flag.StringVar(&o.ref, "ref", "ghcr.io/podgrace/podgrace:dev", "image reference recorded in the archive")
	flag.StringVar(&o.version, "version", "dev", "version label")
	flag.StringVar(&o.arch, "arch", "amd64", "architecture of the binary")
	flag.Parse()
	if err := o.run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type options struct {
	binary, out, ref, version, arch string
}

func (o *options) run() error {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	img, err := build(bin, o.version, o.arch)
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

// build returns the image: one layer and the runtime config. Timestamps are
// the Unix epoch, so the same binary gives the same digest.
func build(bin []byte, version, arch string) (v1.Image, error) {
	files := []ocilayout.File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: 65532},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: binaryPath, Mode: 0o755, Data: bin},
	}
	if ca, err := os.ReadFile(hostCABundle); err == nil {
		files = append(files, ocilayout.File{Path: caBundle, Mode: 0o644, Data: ca})
	} else {
		fmt.Fprintf(os.Stderr, "image: warning: no CA certificates at %s; registries over TLS will not verify\n", hostCABundle)
	}
	layer, err := ocilayout.Layer(files)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "hack/image: podgrace on a distroless-static-nonroot-like base", Created: v1.Time{Time: time.Unix(0, 0).UTC()}},
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
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
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
