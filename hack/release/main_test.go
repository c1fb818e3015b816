package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestArchives packs stand-in binaries for two platforms twice: the same
// bytes each time (fixed times and modes), podgrace and kubectl-podgrace
// in each archive (.exe and a zip on windows), and a krew manifest that
// names each archive by its real SHA-256.
func TestArchives(t *testing.T) {
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	for dir, file := range map[string]string{"linux-arm64": "podgrace", "windows-amd64": "podgrace.exe"} {
		if err := os.MkdirAll(filepath.Join(bin, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, dir, file), []byte("binary for "+dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	license := filepath.Join(tmp, "LICENSE")
	if err := os.WriteFile(license, []byte("license text"), 0o644); err != nil {
		t.Fatal(err)
	}
	var outs []string
	for i := range 2 {
		out := filepath.Join(tmp, "out", string(rune('a'+i)))
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		o := options{version: "v1.2.3", bin: bin, out: out, license: license, url: "https://example.invalid/{{version}}", mtime: time.Unix(1700000000, 0).UTC()}
		if err := o.run(); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
	}
	files := []string{"podgrace_v1.2.3_linux_arm64.tar.gz", "podgrace_v1.2.3_windows_amd64.zip", "podgrace.krew.yaml"}
	for _, f := range files {
		a, errA := os.ReadFile(filepath.Join(outs[0], f))
		b, errB := os.ReadFile(filepath.Join(outs[1], f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: two runs differ (%v, %v)", f, errA, errB)
		}
	}

	tgz, err := os.ReadFile(filepath.Join(outs[0], files[0]))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = string(data)
		if !h.ModTime.Equal(time.Unix(1700000000, 0)) || h.Uid != 0 {
			t.Errorf("%s: time %s uid %d", h.Name, h.ModTime, h.Uid)
		}
	}
	if got["podgrace"] != "binary for linux-arm64" || got["kubectl-podgrace"] != got["podgrace"] || got["LICENSE"] != "license text" {
		t.Errorf("tar.gz entries %v", got)
	}
	zb, err := os.ReadFile(filepath.Join(outs[0], files[1]))
	if err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range z.File {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "LICENSE kubectl-podgrace.exe podgrace.exe" {
		t.Errorf("zip entries %v", names)
	}

	var manifest struct {
		Kind string
		Spec struct {
			Version   string
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string } `json:"selector"`
				URI      string                                  `json:"uri"`
				SHA256   string                                  `json:"sha256"`
				Bin      string                                  `json:"bin"`
			}
		}
	}
	k, err := os.ReadFile(filepath.Join(outs[0], files[2]))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(k, &manifest); err != nil {
		t.Fatal(err)
	}
	if manifest.Kind != "Plugin" || manifest.Spec.Version != "v1.2.3" || len(manifest.Spec.Platforms) != 2 {
		t.Fatalf("krew manifest:\n%s", k)
	}
	for _, p := range manifest.Spec.Platforms {
		file := filepath.Base(p.URI)
		data, err := os.ReadFile(filepath.Join(outs[0], file))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if p.SHA256 != hex.EncodeToString(sum[:]) || !strings.HasPrefix(p.URI, "https://example.invalid/v1.2.3/") {
			t.Errorf("%s: uri %s sha256 %s", file, p.URI, p.SHA256)
		}
		if want := "podgrace_v1.2.3_" + p.Selector.MatchLabels["os"] + "_" + p.Selector.MatchLabels["arch"]; !strings.HasPrefix(file, want) {
			t.Errorf("selector %v names %s", p.Selector.MatchLabels, file)
		}
		if strings.HasSuffix(file, ".zip") != (p.Bin == "kubectl-podgrace.exe") {
			t.Errorf("%s: bin %s", file, p.Bin)
		}
	}
}
