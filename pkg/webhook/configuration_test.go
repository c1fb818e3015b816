package webhook

import (
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"

	"github.com/podgrace/podgrace/pkg/policy"
)

func TestMutatingWebhookConfiguration(t *testing.T) {
	t.Parallel()
	mwc := MutatingWebhookConfiguration(ConfigurationOptions{
		Service:   &admissionregistrationv1.ServiceReference{Namespace: "podgrace-system", Name: "podgrace"},
		Namespace: "podgrace-system",
		CABundle:  []byte("pem"),
	})
	if mwc.Name != ConfigurationName || len(mwc.Webhooks) != 1 {
		t.Fatalf("%s with %d webhooks", mwc.Name, len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.TimeoutSeconds != 5 || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("settings: %+v", w)
	}
	svc := w.ClientConfig.Service
	if svc == nil || *svc.Path != Path || *svc.Port != 443 || w.ClientConfig.URL != nil || string(w.ClientConfig.CABundle) != "pem" {
		t.Errorf("client config: %+v", w.ClientConfig)
	}
	if r := w.Rules[0]; !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) || !slices.Equal(r.Resources, []string{"pods"}) {
		t.Errorf("rules: %+v", w.Rules)
	}

	nsSel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	objSel, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
	if err != nil {
		t.Fatal(err)
	}
	ns := func(name, inject string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		if inject != "" {
			l[policy.LabelInject] = inject
		}
		return l
	}
	nsCases := map[string]struct {
		labels labels.Set
		want   bool
	}{
		"opted in":          {ns("shop", "enabled"), true},
		"not labeled":       {ns("shop", ""), false},
		"opted out":         {ns("shop", "disabled"), false},
		"kube-system":       {ns("kube-system", "enabled"), false},
		"kube-public":       {ns("kube-public", "enabled"), false},
		"kube-node-lease":   {ns("kube-node-lease", "enabled"), false},
		"its own":           {ns("podgrace-system", "enabled"), false},
		"default, opted in": {ns("default", "enabled"), true},
	}
	for name, tc := range nsCases {
		if got := nsSel.Matches(tc.labels); got != tc.want {
			t.Errorf("namespace %s: selected %v, want %v", name, got, tc.want)
		}
	}
	if !objSel.Matches(labels.Set{}) || !objSel.Matches(labels.Set{policy.LabelInject: "enabled"}) || objSel.Matches(labels.Set{policy.LabelInject: "disabled"}) {
		t.Error("the objectSelector must skip exactly the pods labeled podgrace.dev/inject=disabled")
	}

	// Cluster-wide: every namespace not opted out, still never the system ones.
	cw := MutatingWebhookConfiguration(ConfigurationOptions{URL: "https://127.0.0.1:9443/mutate-v1-pod", ClusterWide: true})
	sel, err := metav1.LabelSelectorAsSelector(cw.Webhooks[0].NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(ns("shop", "")) || sel.Matches(ns("shop", "disabled")) || sel.Matches(ns("kube-system", "")) {
		t.Errorf("cluster-wide selector %v", sel)
	}
	if cc := cw.Webhooks[0].ClientConfig; cc.Service != nil || *cc.URL != "https://127.0.0.1:9443/mutate-v1-pod" {
		t.Errorf("URL client config %+v", cc)
	}
}

func TestHookActionFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		info version.Info
		want policy.HookAction
	}{
		{version.Info{GitVersion: "v1.36.3"}, policy.HookSleep},
		{version.Info{GitVersion: "v1.30.0"}, policy.HookSleep},
		{version.Info{GitVersion: "v1.29.9"}, policy.HookExec},
		{version.Info{GitVersion: "v1.28.15-eks-7f9249a"}, policy.HookExec},
		{version.Info{GitVersion: "v1.31.2-gke.1200"}, policy.HookSleep},
		{version.Info{GitVersion: "garbage", Major: "1", Minor: "30+"}, policy.HookSleep},
		{version.Info{GitVersion: "", Major: "1", Minor: "27+"}, policy.HookExec},
	}
	for _, tc := range cases {
		got, err := HookActionFor(&tc.info)
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.info, got, err, tc.want)
		}
	}
	if _, err := HookActionFor(&version.Info{GitVersion: "x"}); err == nil {
		t.Error("an unreadable version gave no error")
	}
}
