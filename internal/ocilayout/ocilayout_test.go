package ocilayout

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func TestLayer(t *testing.T) {
	files := []File{
		{Path: "/usr/local/bin/app", Data: []byte("binary"), Mode: 0o755},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: 65532},
		{Path: "/bin/sh", Link: "dash"},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0::/:/bin/sh\n")},
	}
	l1, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Layer([]File{files[3], files[2], files[1], files[0]})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l1.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("same files in another order: digest %s, then %s", d1, d2)
	}

	rc, err := l1.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	got := map[string]*tar.Header{}
	var order []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name], order = h, append(order, h.Name)
	}
	want := []string{"bin/", "bin/sh", "etc/", "etc/passwd", "home/", "home/nonroot/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/app"}
	if len(order) != len(want) {
		t.Fatalf("entries %q, want %q", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("entries %q, want %q", order, want)
		}
	}
	for name, check := range map[string]func(*tar.Header) bool{
		"bin/":              func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode == 0o755 && h.Uid == 0 },
		"bin/sh":            func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "dash" },
		"etc/passwd":        func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Mode == 0o644 },
		"home/nonroot/":     func(h *tar.Header) bool { return h.Mode == 0o700 && h.Uid == 65532 && h.Gid == 65532 },
		"usr/local/bin/app": func(h *tar.Header) bool { return h.Mode == 0o755 && h.Size == 6 && h.ModTime.Unix() == 0 },
	} {
		if !check(got[name]) {
			t.Errorf("%s: unexpected header %+v", name, got[name])
		}
	}

	if _, err := Layer([]File{{Path: "relative/path"}}); err == nil {
		t.Error("a relative path was accepted")
	}
}

func TestWriteArchive(t *testing.T) {
	layer, err := Layer([]File{{Path: "/app", Data: []byte("x"), Mode: 0o755}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	if err := WriteArchive(archive, "not a reference", img); err == nil {
		t.Error("an invalid reference was accepted")
	}
	if err := WriteArchive(archive, "localhost/test/app:v1", img); err != nil {
		t.Fatal(err)
	}

	p, err := ReadArchive(archive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != want {
		t.Fatalf("index %+v, want the one image %s", m.Manifests, want)
	}
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if got := m.Manifests[0].Annotations[k]; got != "localhost/test/app:v1" {
			t.Errorf("annotation %s = %q", k, got)
		}
	}
	if _, err := os.Stat(archive + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}
