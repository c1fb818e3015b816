package chart_test

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// TestKubeVersion: Chart.yaml's kubeVersion admits the supported versions
// (docs/develop/versions.md) and refuses older clusters. Helm's installer (`helm
// install`, and `helm template --kube-version`) checks a chart with
// chartutil.IsCompatibleRange against its capabilities' KubeVersion (the
// cluster's, or the flag's) and refuses with "chart requires kubeVersion:
// >=1.30.0-0 which is incompatible with Kubernetes v1.29.15"; this test runs
// that function on fake capabilities for each version. (Helm's install
// action itself would add 40 modules to go.mod: kubectl, sqlite, wazero.)
func TestKubeVersion(t *testing.T) {
	t.Parallel()
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	const want = ">=1.30.0-0"
	if got := ch.Metadata.KubeVersion; got != want {
		t.Fatalf("Chart.yaml kubeVersion %q, want %q (update docs/develop/versions.md with it)", got, want)
	}
	cases := []struct {
		version string
		ok      bool
	}{
		{"v1.28.15", false},
		{"v1.29.15", false},
		{"v1.29.15-eks-1b1b2f9", false},
		{"v1.30.0", true},
		// Managed clusters' pre-release-looking suffixes (the -0 in the range).
		{"v1.30.14-gke.1200", true},
		{"v1.33.13", true},
		{"v1.36.3", true},
		{"v1.37.2", true},
	}
	for _, tc := range cases {
		caps := common.DefaultCapabilities.Copy()
		kv, err := common.ParseKubeVersion(tc.version)
		if err != nil {
			t.Fatal(err)
		}
		caps.KubeVersion = *kv
		if got := chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()); got != tc.ok {
			t.Errorf("Kubernetes %s: compatible %t, want %t", tc.version, got, tc.ok)
		}
	}
}
