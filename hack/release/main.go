// Command release packs podgrace's CLI binaries into a release's archives
// and writes the krew plugin manifest from those archives and their hashes
// (hack/release.sh runs it for `make release`; docs/develop/release.md).
//
//	go run ./hack/release -version v0.2.0 -bin dist/release/_build -out dist/release -epoch 1700000000
//
// -bin holds one directory (or link to one) per platform, OS-ARCH, each
// with the podgrace binary (podgrace.exe on windows). Each platform gets an archive,
// podgrace_VERSION_OS_ARCH.tar.gz (a .zip on windows), holding podgrace,
// the same binary as kubectl-podgrace (kubectl's plugin name) and LICENSE.
// Every entry has the time -epoch (SOURCE_DATE_EPOCH) and fixed modes, so
// the same binaries give the same archives. podgrace.krew.yaml names each
// archive by -url and its SHA-256.
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.version, "version", "", "release version (vX.Y.Z)")
	flag.StringVar(&o.bin, "bin", "", "directory of OS-ARCH/podgrace[.exe] binaries")
	flag.StringVar(&o.out, "out", "", "directory to write the archives and podgrace.krew.yaml to")
	flag.StringVar(&o.license, "license", "LICENSE", "license file put in every archive")
	flag.StringVar(&o.url, "url", "https://github.com/podgrace/podgrace/releases/download/{{version}}", "where the archives are downloaded from; {{version}} is -version")
	epoch := flag.String("epoch", os.Getenv("SOURCE_DATE_EPOCH"), "time of every archive entry, in Unix seconds (default SOURCE_DATE_EPOCH)")
	flag.Parse()
	sec, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || sec < 0 {
		fmt.Fprintf(os.Stderr, "release: -epoch %q: not Unix seconds\n", *epoch)
		os.Exit(2)
	}
	o.mtime = time.Unix(sec, 0).UTC()
	if err := o.run(); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

type options struct {
	version, bin, out, license, url string
	mtime                           time.Time
}

// platform is one archive: its OS and architecture, file name and SHA-256.
type platform struct {
	os, arch, file, sha256 string
}

func (o *options) run() error {
	if o.version == "" || o.bin == "" || o.out == "" {
		return errors.New("-version, -bin and -out are required")
	}
	license, err := os.ReadFile(o.license)
	if err != nil {
		return err
	}
	dirs, err := os.ReadDir(o.bin)
	if err != nil {
		return err
	}
	var platforms []platform
	for _, d := range dirs {
		goos, arch, ok := strings.Cut(d.Name(), "-")
		if fi, err := os.Stat(filepath.Join(o.bin, d.Name())); err != nil || !fi.IsDir() || !ok {
			continue // a file, or a link to no directory
		}
		p, err := o.archive(goos, arch, license)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Name(), err)
		}
		platforms = append(platforms, p)
		fmt.Printf("wrote %s\n", filepath.Join(o.out, p.file))
	}
	if len(platforms) == 0 {
		return fmt.Errorf("no OS-ARCH directory in %s", o.bin)
	}
	manifest := krewManifest(o.version, strings.ReplaceAll(o.url, "{{version}}", o.version), platforms)
	return os.WriteFile(filepath.Join(o.out, "podgrace.krew.yaml"), manifest, 0o644)
}

// archive writes the archive of one platform and returns it.
func (o *options) archive(goos, arch string, license []byte) (platform, error) {
	exe := ""
	if goos == "windows" {
		exe = ".exe"
	}
	bin, err := os.ReadFile(filepath.Join(o.bin, goos+"-"+arch, "podgrace"+exe))
	if err != nil {
		return platform{}, err
	}
	files := []entry{
		{name: "LICENSE", mode: 0o644, data: license},
		{name: "kubectl-podgrace" + exe, mode: 0o755, data: bin},
		{name: "podgrace" + exe, mode: 0o755, data: bin},
	}
	var data []byte
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
		data, err = zipFiles(files, o.mtime)
	} else {
		data, err = tarGz(files, o.mtime)
	}
	if err != nil {
		return platform{}, err
	}
	file := fmt.Sprintf("podgrace_%s_%s_%s%s", o.version, goos, arch, ext)
	if err := os.WriteFile(filepath.Join(o.out, file), data, 0o644); err != nil {
		return platform{}, err
	}
	sum := sha256.Sum256(data)
	return platform{os: goos, arch: arch, file: file, sha256: hex.EncodeToString(sum[:])}, nil
}

type entry struct {
	name string
	mode fs.FileMode
	data []byte
}

func tarGz(files []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, no time in the gzip header
	tw := tar.NewWriter(zw)
	for _, f := range files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: int64(f.mode), Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func zipFiles(files []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// krewManifest is the krew plugin manifest (krew.googlecontainertools.github.com/v1alpha2)
// of the archives, in OS-ARCH order.
func krewManifest(version, url string, platforms []platform) []byte {
	slices.SortFunc(platforms, func(a, b platform) int { return strings.Compare(a.os+"/"+a.arch, b.os+"/"+b.arch) })
	var b strings.Builder
	fmt.Fprintf(&b, `# Generated by make release (hack/release) from the release's archives.
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: podgrace
spec:
  version: %s
  homepage: https://github.com/podgrace/podgrace
  shortDescription: Graceful pod shutdown - preStop sleeps and exec-form commands
  description: |
    podgrace's CLI as a kubectl plugin: inject shows the preStop sleep and
    exec-form rewrite podgrace's webhook would make to a manifest, audit and
    explain report on a cluster's workloads, and generate policy writes the
    MutatingAdmissionPolicy form of the webhook.
  platforms:
`, version)
	for _, p := range platforms {
		exe := ""
		if p.os == "windows" {
			exe = ".exe"
		}
		fmt.Fprintf(&b, `  - selector:
      matchLabels:
        os: %s
        arch: %s
    uri: %s/%s
    sha256: %s
    bin: kubectl-podgrace%s
    files:
      - from: kubectl-podgrace%s
        to: .
      - from: LICENSE
        to: .
`, p.os, p.arch, url, p.file, p.sha256, exe, exe)
	}
	return []byte(b.String())
}
