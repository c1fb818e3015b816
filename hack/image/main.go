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
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
	if err := writeOCIArchive(o.out, o.ref, img); err != nil {
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
	files := []file{
		{path: "/etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{path: "/home/nonroot", dir: true, mode: 0o700, uid: 65532},
		{path: "/tmp", dir: true, mode: 0o1777},
		{path: binaryPath, mode: 0o755, data: bin},
	}
	if ca, err := os.ReadFile(hostCABundle); err == nil {
		files = append(files, file{path: caBundle, mode: 0o644, data: ca})
	} else {
		fmt.Fprintf(os.Stderr, "image: warning: no CA certificates at %s; registries over TLS will not verify\n", hostCABundle)
	}
	layerData, err := tarLayer(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	}, tarball.WithMediaType(types.OCILayer))
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

// file is one entry of the layer, owned by root unless uid is set.
type file struct {
	path string
	mode int64
	data []byte
	dir  bool
	uid  int
}

// tarLayer writes files, and every parent directory not listed (0755,
// root), as an uncompressed tar with fixed timestamps.
func tarLayer(files []file) ([]byte, error) {
	entries := map[string]file{}
	for _, f := range files {
		entries[strings.TrimPrefix(f.path, "/")] = f
		for dir := filepath.Dir(f.path); dir != "/"; dir = filepath.Dir(dir) {
			d := strings.TrimPrefix(dir, "/")
			if _, ok := entries[d]; !ok {
				entries[d] = file{path: dir, dir: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := entries[n]
		h := &tar.Header{Name: n, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !f.dir {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeOCIArchive writes img as a tarred OCI image layout with ref recorded
// in index.json (io.containerd.image.name for `ctr images import`,
// org.opencontainers.image.ref.name for other tools).
func writeOCIArchive(out, ref string, img v1.Image) error {
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": ref,
	})); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarDir(dir, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// tarDir tars the files and directories under dir, in name order.
func tarDir(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	walkErr := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	return errors.Join(walkErr, tw.Close(), f.Close())
}
