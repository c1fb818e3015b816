// Package chart renders and lints podgrace's Helm chart with Helm's own Go
// SDK (helm.sh/helm/v4: the chart loader, the template engine, the values
// schema check and the linter `helm lint` runs). The generator of config/,
// the demo and the chart tests all render through it, so what they use is
// exactly what `helm install` would create.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/registration"
)

// Path is the chart's directory relative to the repository root.
const Path = "charts/podgrace"

// KubeVersion is the Kubernetes version charts are rendered and linted for:
// the version the tests' API server runs, the Makefile's KUBE_VERSION
// (TestKubeVersionOnce in test/repo).
const KubeVersion = "v1.36.3"

// Release names the release a chart is rendered for.
type Release struct {
	Name      string
	Namespace string
}

// DefaultRelease is the release config/ and the demo are rendered for.
var DefaultRelease = Release{Name: "podgrace", Namespace: registration.DefaultNamespace}

// Dir returns the chart's directory, found from the working directory
// upwards (tests run in their package's directory, tools at the root).
func Dir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, Path), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chart: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Rendered is a rendered chart.
type Rendered struct {
	// Files maps a template's path (podgrace/templates/x.yaml) to its output.
	Files map[string]string
	// Objects are the rendered objects, in template path order.
	Objects []*unstructured.Unstructured
}

// Render renders the chart in dir with values over the chart's defaults, as
// `helm template` does: values are coalesced and checked against
// values.schema.json, the templates are rendered for KubeVersion, and every
// YAML document of every template becomes an object.
func Render(dir string, rel Release, values map[string]any) (*Rendered, error) {
	return RenderFor(dir, rel, values, KubeVersion)
}

// RenderFor renders as Render does, for the Kubernetes version kubeVersion.
func RenderFor(dir string, rel Release, values map[string]any, kubeVersion string) (*Rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", dir, err)
	}
	caps := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	vals, err := chartutil.ToRenderValuesWithSchemaValidation(ch, values, common.ReleaseOptions{
		Name: rel.Name, Namespace: rel.Namespace, Revision: 1, IsInstall: true,
	}, caps, false)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering: %w", err)
	}
	out := &Rendered{Files: map[string]string{}}
	names := make([]string, 0, len(files))
	for name, text := range files {
		if !strings.HasSuffix(name, ".yaml") || strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		out.Files[name] = text
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		objs, err := Decode(out.Files[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out.Objects = append(out.Objects, objs...)
	}
	return out, nil
}

// Decode splits a multi-document YAML stream into objects, skipping empty
// documents.
func Decode(text string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document without kind or apiVersion: %v", m)
		}
		out = append(out, u)
	}
}

// Find returns the rendered object of that kind and name, or nil.
func (r *Rendered) Find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// OfKind returns the rendered objects of a kind.
func (r *Rendered) OfKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// Into converts a rendered object into a typed API object.
func Into(u *unstructured.Unstructured, obj any) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(data, obj)
}

// Lint runs Helm's chart linter (`helm lint`: Chart.yaml, values and their
// schema, templates rendered and parsed, with these values) and returns its
// messages of at least severity support.InfoSev.
func Lint(dir string, namespace string, values map[string]any) []support.Message {
	kv, _ := common.ParseKubeVersion(KubeVersion)
	res := lint.RunAll(dir, values, namespace, lint.WithKubeVersion(kv))
	return res.Messages
}

// ReadValues reads a values file as Helm does.
func ReadValues(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vals, err := common.ReadValues(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return vals, nil
}

// ToYAML renders objects as one multi-document YAML stream.
func ToYAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			b.WriteString("---\n")
		}
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		b.Write(data)
	}
	return b.Bytes(), nil
}
