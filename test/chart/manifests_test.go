package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// TestGeneratedFilesCurrent fails when config/ or the chart README's values
// table drift from what the chart and values.yaml generate: `make test`
// fails until `make manifests` is run and its output committed.
func TestGeneratedFilesCurrent(t *testing.T) {
	t.Parallel()
	dir := chartDir(t)
	files, err := chart.Generated(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(dir))
	stale, err := chart.Stale(root, files)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("generated files are out of date; run `make manifests`: %s", strings.Join(stale, ", "))
	}
}

// TestConfigOnAPIServer applies config/ as `kubectl apply --server-side -k
// config/` would (the files its kustomization.yaml lists) to the real API
// server.
func TestConfigOnAPIServer(t *testing.T) {
	t.Parallel()
	k := newClient(t, apiServer(t))
	root := filepath.Dir(filepath.Dir(chartDir(t)))
	data, err := os.ReadFile(filepath.Join(root, chart.ConfigDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &kust); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range kust.Resources {
		text, err := os.ReadFile(filepath.Join(root, chart.ConfigDir, f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := chart.Decode(string(text))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			kinds[o.GetKind()] = true
			if _, helm := o.GetLabels()["helm.sh/chart"]; helm {
				t.Errorf("%s %s carries Helm's labels", o.GetKind(), o.GetName())
			}
			// Server-side apply, as `kubectl apply --server-side` does: the
			// objects are validated and stored, and a repeated run
			// (-count=N) applies over the first run's.
			if err := k.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("podgrace-test"), client.ForceOwnership); err != nil {
				t.Errorf("%s: applying %s %s: %v", f, o.GetKind(), o.GetName(), err)
			} else if o.GetNamespace() == "" && o.GetKind() != "Namespace" {
				t.Cleanup(func() { _ = k.Delete(context.Background(), o) })
			}
		}
	}
	for _, kind := range []string{"Namespace", "Deployment", "MutatingWebhookConfiguration", "Certificate", "Issuer", "ConfigMap", "PodDisruptionBudget"} {
		if !kinds[kind] {
			t.Errorf("config/ has no %s", kind)
		}
	}
}
