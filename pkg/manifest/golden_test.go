package manifest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// A golden case is testdata/golden/NAME.yaml → NAME.golden. The input's first
// document may be a `kind: GoldenCase` header giving the case's cluster
// config, namespace annotations, hook action and the image configs an
// inspection would return; the rest is run through Inject exactly as
// `podgrace inject` runs it. The golden file holds the output stream, then
// the warnings as comments, or the error. Set REFRESH_GOLDEN=true (make
// golden) to rewrite them.
type goldenCase struct {
	Kind                 string            `json:"kind"`
	Config               map[string]any    `json:"config"`
	NamespaceAnnotations map[string]string `json:"namespaceAnnotations"`
	HookAction           policy.HookAction `json:"hookAction"`
	Images               map[string]struct {
		Entrypoint []string `json:"entrypoint"`
		Cmd        []string `json:"cmd"`
		Pinned     string   `json:"pinned"`
		Error      string   `json:"error"`
	} `json:"images"`
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 40 {
		t.Fatalf("found %d golden cases, want at least 40", len(inputs))
	}
	refresh := os.Getenv("REFRESH_GOLDEN") == "true"
	goldens, _ := filepath.Glob("testdata/golden/*.golden")
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".yaml"); err != nil {
			t.Errorf("%s has no input: remove it", g)
		}
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			gc, rest := splitCase(t, src)
			opts := gc.options(t)
			got := render(t, rest, opts)

			goldenPath := strings.TrimSuffix(in, ".yaml") + ".golden"
			if refresh {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run `make golden` to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run `make golden` if the change is intended):\n--- got\n%s\n--- want\n%s", goldenPath, got, want)
			}

			// Idempotence: injecting the output again changes nothing.
			out, _, err := Inject(context.Background(), bytes.NewReader(rest), opts)
			if err != nil {
				return
			}
			again, docs, err := Inject(context.Background(), bytes.NewReader(out), opts)
			if err != nil {
				t.Fatalf("second pass: %v", err)
			}
			if !bytes.Equal(again, out) {
				t.Errorf("second pass changed the output:\n%s", again)
			}
			for _, d := range docs {
				if d.Changed {
					t.Errorf("second pass reports document %d as changed", d.Index)
				}
			}
		})
	}
}

// render runs Inject and prints what a user would see.
func render(t *testing.T, src []byte, o Options) []byte {
	t.Helper()
	out, docs, err := Inject(context.Background(), bytes.NewReader(src), o)
	if err != nil {
		return []byte("# error: " + err.Error() + "\n")
	}
	var b bytes.Buffer
	b.Write(out)
	for _, d := range docs {
		for _, w := range d.Warnings {
			if len(w) > inject.MaxWarningLen || !strings.HasPrefix(w, "podgrace: ") {
				t.Errorf("warning %q: want under %d characters, starting with \"podgrace: \"", w, inject.MaxWarningLen)
			}
			b.WriteString("# warning (document " + strconv.Itoa(d.Index) + "): " + w + "\n")
		}
	}
	return b.Bytes()
}

func splitCase(t *testing.T, src []byte) (goldenCase, []byte) {
	t.Helper()
	first, err := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(src))).Read()
	if err != nil {
		t.Fatal(err)
	}
	var gc goldenCase
	if err := sigsyaml.Unmarshal(first, &gc); err != nil || gc.Kind != "GoldenCase" {
		return goldenCase{}, src
	}
	rest := src[bytes.Index(src, first)+len(first):]
	rest = bytes.TrimPrefix(bytes.TrimLeft(rest, "\n"), []byte("---\n"))
	return gc, rest
}

func (gc *goldenCase) options(t *testing.T) Options {
	t.Helper()
	cfg := policy.Default()
	if gc.Config != nil {
		raw, err := sigsyaml.Marshal(gc.Config)
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err = policy.ParseConfig(raw); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Config: &cfg, NamespaceAnnotations: gc.NamespaceAnnotations, HookAction: gc.HookAction}
	if gc.Images != nil {
		o.Images = func(_ context.Context, _ *corev1.Pod, images []string) map[string]inject.ImageInfo {
			out := map[string]inject.ImageInfo{}
			for _, img := range images {
				if c, ok := gc.Images[img]; ok {
					info := inject.ImageInfo{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Pinned: c.Pinned}
					if c.Error != "" {
						info.Err = errors.New(c.Error)
					}
					out[img] = info
				}
			}
			return out
		}
	}
	return o
}

// TestGoldenDocsWorkloadKinds: docs/reference/cli.md's table of the objects
// podgrace mutates is generated from the workload table; `make golden`
// rewrites it.
func TestGoldenDocsWorkloadKinds(t *testing.T) {
	const path = "../../docs/reference/cli.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin, end := "<!-- BEGIN GENERATED: workload kinds -->\n", "<!-- END GENERATED: workload kinds -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the workload kinds markers", path)
	}
	var b strings.Builder
	b.WriteString("| apiVersion | kind | pod |\n|---|---|---|\n")
	for _, k := range workload.Kinds {
		where := "`" + k.TemplatePath() + "`"
		if len(k.Template) == 0 {
			where = "the object"
		}
		b.WriteString("| `" + k.APIVersion + "` | `" + k.Kind + "` | " + where + " |\n")
	}
	if doc[i+len(begin):j] == b.String() {
		return
	}
	if os.Getenv("REFRESH_GOLDEN") != "true" {
		t.Fatalf("%s's table of workload kinds is stale (run `make golden`):\n%s", path, b.String())
	}
	if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+b.String()+doc[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}
