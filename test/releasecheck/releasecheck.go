// Package releasecheck checks a published podgrace image index: what
// `make test-release` (test/release) and `make e2e` (test/e2e, against the
// node registry) both assert of the release.
package releasecheck

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PlatformsAt pulls the image index at ref (REGISTRY/REPO@sha256:…, plain
// HTTP allowed: the test registries are) and checks it with Platforms. err
// is set when there is no index to check.
func PlatformsAt(ctx context.Context, ref string) (checked []string, problems []error, err error) {
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		return nil, nil, err
	}
	idx, err := remote.Index(d, remote.WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("no image index at %s: %w", ref, err)
	}
	checked, problems = Platforms(idx)
	return checked, problems, nil
}

// machines are the image's platforms (linux/ARCH) and the ELF machine of
// each one's /podgrace.
var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// Platforms checks that the index has exactly a linux/amd64 and a
// linux/arm64 image, that each image's config names its platform, and that
// each one's /podgrace is a 64-bit ELF executable for that machine (the
// arm64 one cannot run on an amd64 host: its ELF header is the proof). It
// returns a line per image checked, and every problem found.
func Platforms(idx v1.ImageIndex) (checked []string, problems []error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, []error{err}
	}
	want := map[string]bool{"amd64": true, "arm64": true}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			problems = append(problems, fmt.Errorf("index entry %s has platform %v", d.Digest, d.Platform))
			continue
		}
		machine, ok := machines[d.Platform.Architecture]
		if !ok || !want[d.Platform.Architecture] {
			problems = append(problems, fmt.Errorf("unexpected or repeated platform %s", d.Platform))
			continue
		}
		delete(want, d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		cf, err := img.ConfigFile()
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
			problems = append(problems, fmt.Errorf("%s: config says %s/%s", d.Platform, cf.OS, cf.Architecture))
		}
		bin, err := File(img, "podgrace")
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", d.Platform, err))
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: /podgrace is not ELF: %w", d.Platform, err))
			continue
		}
		if f.Machine != machine || f.Class != elf.ELFCLASS64 {
			problems = append(problems, fmt.Errorf("%s: /podgrace is %s %s, want ELFCLASS64 %s", d.Platform, f.Class, f.Machine, machine))
			continue
		}
		checked = append(checked, fmt.Sprintf("%s %s: /podgrace is ELF %s", d.Platform, d.Digest, f.Machine))
	}
	for arch := range want {
		problems = append(problems, fmt.Errorf("the index lacks linux/%s", arch))
	}
	return checked, problems
}

// File returns the content of the file at name (relative to /) in the
// image's layers, the first layer that has it.
func File(img v1.Image, name string) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		b, err := layerFile(l, name)
		if err != nil || b != nil {
			return b, err
		}
	}
	return nil, fmt.Errorf("no /%s in the image", name)
}

func layerFile(l v1.Layer, name string) ([]byte, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Name == name {
			return io.ReadAll(tr)
		}
	}
}
