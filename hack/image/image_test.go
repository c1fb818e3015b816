package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/podgrace/podgrace/internal/ocilayout"
)

// TestImage builds podgrace as `make build` does, writes the image as
// `make image` does, and reads the tarball back with go-containerregistry:
// an OCI layout naming the image, an exec-form entrypoint, a non-root user,
// and a static executable /podgrace that runs.
func TestImage(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "podgrace")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X github.com/podgrace/podgrace/pkg/version.Version=v0.0.0-test", "-o", bin, "github.com/podgrace/podgrace/cmd/podgrace")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	archive := filepath.Join(tmp, "podgrace-image.tar")
	o := options{binary: bin, out: archive, ref: "ghcr.io/podgrace/podgrace:v0.0.0-test", version: "v0.0.0-test", arch: "amd64"}
	if err := o.run(); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(tmp, "layout")
	lp, err := ocilayout.ReadArchive(archive, dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%d manifests in index.json, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.MediaType != types.OCIManifestSchema1 || desc.Annotations["io.containerd.image.name"] != o.ref || desc.Annotations["org.opencontainers.image.ref.name"] != o.ref {
		t.Errorf("index entry %+v: want an OCI manifest named %s", desc, o.ref)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{"/podgrace"}) || !slices.Equal(c.Cmd, []string{"webhook"}) {
		t.Errorf("entrypoint %q cmd %q, want exec form [/podgrace] [webhook]", c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", c.User)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || c.Labels["org.opencontainers.image.version"] != "v0.0.0-test" {
		t.Errorf("platform %s/%s labels %v", cf.OS, cf.Architecture, c.Labels)
	}
	checkDockerfile(t, c)

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}
	files := layerFiles(t, layers[0])
	h, ok := files["podgrace"]
	if !ok {
		t.Fatalf("no /podgrace in the layer: %v", keys(files))
	}
	if h.hdr.Typeflag != tar.TypeReg || h.hdr.Mode&0o111 != 0o111 || h.hdr.Uid != 0 {
		t.Errorf("/podgrace: type %c mode %o uid %d, want a root-owned executable", h.hdr.Typeflag, h.hdr.Mode, h.hdr.Uid)
	}
	checkStatic(t, h.data)
	out := filepath.Join(tmp, "from-layer")
	if err := os.WriteFile(out, h.data, 0o755); err != nil {
		t.Fatal(err)
	}
	if v, err := exec.Command(out, "version").Output(); err != nil || strings.TrimSpace(string(v)) != "v0.0.0-test" {
		t.Errorf("/podgrace version: %q, %v", v, err)
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks nonroot 65532:\n%s", files["etc/passwd"].data)
	}
	if d := files["tmp/"]; d.hdr == nil || d.hdr.Mode != 0o1777 {
		t.Error("no world-writable sticky /tmp")
	}
	checkCABundle(t, files["etc/ssl/certs/ca-certificates.crt"].data)

	// Same binary, same image: the build is reproducible.
	again, err := build2(t, bin)
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := digest(t, img), digest(t, again); d1 != d2 {
		t.Errorf("two builds of the same binary differ: %s, %s", d1, d2)
	}
}

// TestIndex writes the release's image index (make release) from two
// stand-in binaries: one OCI image per architecture, each with its platform
// in the index and its config, the creation time given, and the same
// digest when written twice. make test-release checks the real arm64
// binary's ELF machine.
func TestIndex(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	var pairs []string
	for _, arch := range []string{"amd64", "arm64"} {
		f := filepath.Join(tmp, "podgrace-"+arch)
		if err := os.WriteFile(f, []byte("stand-in for the "+arch+" binary"), 0o755); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, arch+"="+f)
	}
	digests := map[string]bool{}
	for i := range 2 {
		o := options{layoutDir: filepath.Join(tmp, "layout", strconv.Itoa(i)), binaries: strings.Join(pairs, ","),
			ref: "ghcr.io/podgrace/podgrace:v0.0.0-test", version: "v0.0.0-test", created: "1700000000"}
		if err := o.run(); err != nil {
			t.Fatal(err)
		}
		outer, err := layout.ImageIndexFromPath(o.layoutDir)
		if err != nil {
			t.Fatal(err)
		}
		om, err := outer.IndexManifest()
		if err != nil || len(om.Manifests) != 1 || om.Manifests[0].MediaType != types.OCIImageIndex || om.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != o.ref {
			t.Fatalf("index.json: %+v, %v; want one OCI image index named %s", om, err, o.ref)
		}
		digests[om.Manifests[0].Digest.String()] = true
		idx, err := outer.ImageIndex(om.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range im.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if d.Platform == nil || d.Platform.OS != cf.OS || d.Platform.Architecture != cf.Architecture || d.MediaType != types.OCIManifestSchema1 {
				t.Errorf("index entry %+v, config platform %s/%s", d, cf.OS, cf.Architecture)
			}
			if !cf.Created.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("%s created %s, want SOURCE_DATE_EPOCH's 1700000000", cf.Architecture, cf.Created)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers: %d, %v", len(layers), err)
			}
			if want := "stand-in for the " + cf.Architecture + " binary"; string(layerFiles(t, layers[0])["podgrace"].data) != want {
				t.Errorf("%s image: /podgrace is not its binary", cf.Architecture)
			}
			got = append(got, cf.OS+"/"+cf.Architecture)
		}
		if !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("platforms %v, want linux/amd64 and linux/arm64", got)
		}
	}
	if len(digests) != 1 {
		t.Errorf("two writes of the same binaries give index digests %v", digests)
	}
}

func build2(t *testing.T, bin string) (v1.Image, error) {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	return build(data, "v0.0.0-test", "amd64", time.Unix(0, 0).UTC())
}

func digest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// checkDockerfile: the Dockerfile and this builder describe the same image.
func checkDockerfile(t *testing.T, c v1.Config) {
	t.Helper()
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var final []string // instructions of the last stage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FROM ") {
			final = []string{line}
			continue
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			final = append(final, line)
		}
	}
	if len(final) == 0 || !strings.HasPrefix(final[0], "FROM gcr.io/distroless/static:nonroot") {
		t.Fatalf("the Dockerfile's final stage is not distroless static nonroot: %q", final)
	}
	want := map[string]string{"USER": c.User}
	for k, v := range map[string][]string{"ENTRYPOINT": c.Entrypoint, "CMD": c.Cmd} {
		j, _ := json.Marshal(v)
		want[k] = string(j)
	}
	for _, line := range final {
		instr, arg, _ := strings.Cut(line, " ")
		if w, ok := want[instr]; ok {
			if strings.ReplaceAll(arg, ", ", ",") != w {
				t.Errorf("Dockerfile %s %s, the image has %s", instr, arg, w)
			}
			delete(want, instr)
		}
	}
	if len(want) > 0 {
		t.Errorf("the Dockerfile's final stage lacks %v", want)
	}
}

// checkCABundle: the image's CA bundle is the pinned fallback roots, parsed
// as PEM into a pool that holds them all, whatever the build host has.
func checkCABundle(t *testing.T, ca []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificates in the image")
	}
	var want int
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			want++
		}
	}
	if n := bytes.Count(ca, []byte("-----BEGIN CERTIFICATE-----")); n != want || want < 100 {
		t.Errorf("%d CA certificates in the image, the pinned bundle has %d without constraint", n, want)
	}
}

func checkStatic(t *testing.T, bin []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("/podgrace is not an ELF executable: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/podgrace is dynamically linked; distroless static has no libc")
		}
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func layerFiles(t *testing.T, l v1.Layer) map[string]entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = entry{hdr: h, data: data}
	}
}

func keys(m map[string]entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestGoVersionCopies: the `go` line of go.mod is the one source of the Go
// toolchain; the Dockerfile's builder and the README's requirement line are
// copies of it, and must not drift.
func TestGoVersionCopies(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := string(m[1])
	if got := runtime.Version(); got != "go"+want {
		t.Errorf("the tests run under %s, go.mod asks for go%s (GOTOOLCHAIN not selected?)", got, want)
	}
	for file, re := range map[string]string{
		"../../Dockerfile": `(?m)^ARG GO_VERSION=(\S+)$`,
		"../../README.md":  `Go (\d+\.\d+\.\d+)`,
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got := regexp.MustCompile(re).FindSubmatch(b)
		if got == nil || string(got[1]) != want {
			t.Errorf("%s names Go %q, go.mod says %s", file, got, want)
		}
	}
}
