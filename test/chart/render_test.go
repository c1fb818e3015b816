package chart_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart/v2/lint/support"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
	"github.com/podgrace/podgrace/pkg/workload"
)

var rel = chart.Release{Name: "podgrace", Namespace: "podgrace-system"}

// TestLint runs Helm's linter (what `helm lint --strict` checks, with the
// values schema) for every combination: no warnings, no errors.
func TestLint(t *testing.T) {
	t.Parallel()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, m := range chart.Lint(chartDir(t), rel.Namespace, c.values) {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m.Error())
				} else {
					t.Logf("lint: %s", m.Error())
				}
			}
		})
	}
}

// TestRender checks the shape of what each combination renders: docs/design.md §7
// and the install contract of issue 5.
func TestRender(t *testing.T) {
	t.Parallel()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, rel, c.values)
			t.Logf("objects: %v", kinds(r))
			checkDeployment(t, r, c)
			checkWebhookConfiguration(t, r, c)
			checkRBAC(t, r, c)
			checkTLS(t, r, c)
			checkConfigMap(t, r, c)
			checkServiceMonitor(t, r, c)
			checkPrometheusRule(t, r, c)
			checkNetworkPolicy(t, r, c)
			checkHelmTest(t, r)
			checkWorkloadCheck(t, r)
			if r.Find("PodDisruptionBudget", "podgrace") == nil {
				t.Error("no PodDisruptionBudget")
			}
			for _, o := range r.Objects {
				if o.GetLabels()["app.kubernetes.io/name"] != "podgrace" {
					t.Errorf("%s/%s has no app.kubernetes.io/name label", o.GetKind(), o.GetName())
				}
			}
		})
	}
}

func checkDeployment(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	var d appsv1.Deployment
	if err := chart.Into(r.Find("Deployment", "podgrace"), &d); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", *d.Spec.Replicas)
	}
	ps := d.Spec.Template.Spec
	if d.Spec.Template.Labels[policy.LabelInject] != policy.InjectDisabled {
		t.Errorf("podgrace's own pods are not labeled %s=%s", policy.LabelInject, policy.InjectDisabled)
	}
	if sc := ps.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext is not restricted: %+v", sc)
	}
	if len(ps.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	for _, tsc := range ps.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || tsc.LabelSelector.MatchLabels["app.kubernetes.io/instance"] != rel.Name {
			t.Errorf("topology spread constraint %s does not select the release's pods", tsc.TopologyKey)
		}
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	ctr := ps.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext is not restricted: %+v", sc)
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources incomplete: %+v", ctr.Resources)
	}
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no native preStop sleep: %+v", ctr.Lifecycle)
	}
	sleep := ctr.Lifecycle.PreStop.Sleep.Seconds
	drain := flagDuration(t, ctr.Args, "--drain-delay")
	if grace := *ps.TerminationGracePeriodSeconds; time.Duration(grace)*time.Second <= time.Duration(sleep)*time.Second+drain {
		t.Errorf("terminationGracePeriodSeconds %d does not cover the preStop sleep %ds + drain delay %v", grace, sleep, drain)
	}
	// One source: the binary's deadline is the webhook configuration's timeoutSeconds.
	var mwcT admissionregistrationv1.MutatingWebhookConfiguration
	if err := chart.Into(r.Find("MutatingWebhookConfiguration", "podgrace"), &mwcT); err == nil && len(mwcT.Webhooks) > 0 && mwcT.Webhooks[0].TimeoutSeconds != nil {
		if got := flagDuration(t, ctr.Args, "--webhook-timeout"); got != time.Duration(*mwcT.Webhooks[0].TimeoutSeconds)*time.Second {
			t.Errorf("--webhook-timeout %v, the webhook's timeoutSeconds %d", got, *mwcT.Webhooks[0].TimeoutSeconds)
		}
	} else {
		t.Errorf("no MutatingWebhookConfiguration timeoutSeconds to compare --webhook-timeout with: %v", err)
	}
	if ctr.Args[0] != "webhook" {
		t.Errorf("args %v do not start with the webhook command", ctr.Args)
	}
	for _, f := range []string{"--cert-dir", "--port", "--config", "--metrics-bind-address", "--health-probe-bind-address", "--drain-delay"} {
		if flagValue(ctr.Args, f) == "" {
			t.Errorf("args %v lack %s", ctr.Args, f)
		}
	}
	if got := slices.Contains(ctr.Args, "--metrics-secure"); got != c.metricsSecure {
		t.Errorf("--metrics-secure in args = %t with metrics.secure = %t", got, c.metricsSecure)
	}
	if got := flagValue(ctr.Args, "--selfcert-secret") != ""; got == c.certManager {
		t.Errorf("self-managed CA flags present = %t with certManager.enabled = %t", got, c.certManager)
	}
	probes := map[string]*corev1.Probe{"/healthz": ctr.LivenessProbe, "/readyz": ctr.ReadinessProbe}
	for path, p := range probes {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
			t.Errorf("no probe on %s: %+v", path, p)
		}
	}
	mounted := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounted[m.Name] = m.MountPath
	}
	if mounted["serving-certs"] != flagValue(ctr.Args, "--cert-dir") {
		t.Errorf("--cert-dir %s is not the serving-certs mount %s", flagValue(ctr.Args, "--cert-dir"), mounted["serving-certs"])
	}
	if !strings.HasPrefix(flagValue(ctr.Args, "--config"), mounted["config"]+"/") {
		t.Errorf("--config %s is not in the config mount %s", flagValue(ctr.Args, "--config"), mounted["config"])
	}
	if c.name == "extras" {
		var svc corev1.Service
		if err := chart.Into(r.Find("Service", "podgrace-metrics"), &svc); err != nil {
			t.Fatal(err)
		}
		if p := svc.Spec.Ports; len(p) != 1 || p[0].AppProtocol == nil || *p[0].AppProtocol != "https" {
			t.Errorf("metrics Service ports %+v, want one with appProtocol https (metrics.secure)", p)
		}
		if ps.PriorityClassName != "system-cluster-critical" {
			t.Errorf("priorityClassName = %q", ps.PriorityClassName)
		}
		if !strings.Contains(ctr.Image, "@sha256:") {
			t.Errorf("image %q does not use the digest", ctr.Image)
		}
	}
}

// checkServiceMonitor: the ServiceMonitor selects the metrics Service (and
// not the webhook Service) by labels, names its port, and with secured
// metrics scrapes over HTTPS with a token and the release's CA, for a name
// the serving certificate carries.
func checkServiceMonitor(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	sm := r.Find("ServiceMonitor", "podgrace")
	if (sm != nil) != c.serviceMonitor {
		t.Fatalf("ServiceMonitor rendered = %t, want %t", sm != nil, c.serviceMonitor)
	}
	if sm == nil {
		return
	}
	var metrics, webhookSvc corev1.Service
	if err := chart.Into(r.Find("Service", "podgrace-metrics"), &metrics); err != nil {
		t.Fatalf("the ServiceMonitor's Service: %v", err)
	}
	if err := chart.Into(r.Find("Service", "podgrace-webhook"), &webhookSvc); err != nil {
		t.Fatal(err)
	}
	var spec struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port            string `json:"port"`
			Path            string `json:"path"`
			Scheme          string `json:"scheme"`
			BearerTokenFile string `json:"bearerTokenFile"`
			TLSConfig       *struct {
				ServerName string `json:"serverName"`
				CA         struct {
					Secret *corev1.SecretKeySelector `json:"secret"`
				} `json:"ca"`
			} `json:"tlsConfig"`
		} `json:"endpoints"`
	}
	raw, _, err := unstructured.NestedMap(sm.Object, "spec")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
		t.Fatal(err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(metrics.Labels)) || sel.Matches(labels.Set(webhookSvc.Labels)) {
		t.Errorf("selector %v: matches the metrics Service %t (want true), the webhook Service %t (want false)",
			sel, sel.Matches(labels.Set(metrics.Labels)), sel.Matches(labels.Set(webhookSvc.Labels)))
	}
	if !slices.Equal(spec.NamespaceSelector.MatchNames, []string{rel.Namespace}) {
		t.Errorf("namespaceSelector %v, want the release namespace", spec.NamespaceSelector.MatchNames)
	}
	if len(spec.Endpoints) != 1 || len(metrics.Spec.Ports) != 1 {
		t.Fatalf("%d endpoints, metrics Service ports %+v", len(spec.Endpoints), metrics.Spec.Ports)
	}
	ep := spec.Endpoints[0]
	if ep.Port != metrics.Spec.Ports[0].Name || ep.Path != "/metrics" {
		t.Errorf("endpoint port %q path %q, want the Service's port %q and /metrics", ep.Port, ep.Path, metrics.Spec.Ports[0].Name)
	}
	if !c.metricsSecure {
		if ep.Scheme != "http" || ep.TLSConfig != nil || ep.BearerTokenFile != "" {
			t.Errorf("plain metrics scraped with scheme %q, TLS %+v, token %q", ep.Scheme, ep.TLSConfig, ep.BearerTokenFile)
		}
		return
	}
	if ep.Scheme != "https" || ep.BearerTokenFile == "" || ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil {
		t.Fatalf("secured metrics scraped with scheme %q, token file %q, TLS %+v", ep.Scheme, ep.BearerTokenFile, ep.TLSConfig)
	}
	if ca := ep.TLSConfig.CA.Secret; ca.Name != "podgrace-webhook-tls" || ca.Key != "ca.crt" {
		t.Errorf("CA from %s/%s, want the release's TLS Secret's ca.crt", ca.Name, ca.Key)
	}
	// The serving certificate's names: cert-manager's Certificate, or those
	// the self-managed CA is told to sign.
	var names []string
	if serving := r.Find("Certificate", "podgrace-webhook"); serving != nil {
		var err error
		if names, _, err = unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames"); err != nil {
			t.Fatal(err)
		}
	} else {
		var d appsv1.Deployment
		if err := chart.Into(r.Find("Deployment", "podgrace"), &d); err != nil {
			t.Fatal(err)
		}
		names = strings.Split(flagValue(d.Spec.Template.Spec.Containers[0].Args, "--selfcert-dns-names"), ",")
	}
	if !slices.Contains(names, ep.TLSConfig.ServerName) {
		t.Errorf("serverName %q is not a name of the serving certificate %v", ep.TLSConfig.ServerName, names)
	}
	if c.name == "extras" && sm.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack the extra release label", sm.GetLabels())
	}
}

// checkPrometheusRule: the alerts watch the API server's fail-open counter
// for the webhook the chart registers, podgrace's own counters as the
// ServiceMonitor's job labels them, and the Deployment the chart creates.
func checkPrometheusRule(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	pr := r.Find("PrometheusRule", "podgrace")
	if (pr != nil) != c.prometheusRule {
		t.Fatalf("PrometheusRule rendered = %t, want %t", pr != nil, c.prometheusRule)
	}
	if pr == nil {
		return
	}
	var spec struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
				For   string `json:"for"`
			} `json:"rules"`
		} `json:"groups"`
	}
	raw, _, err := unstructured.NestedMap(pr.Object, "spec")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := chart.Into(r.Find("MutatingWebhookConfiguration", "podgrace"), &mwc); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`namespace=%q,job=%q`, rel.Namespace, "podgrace-metrics")
	if r.Find("Service", "podgrace-metrics") == nil || r.Find("Deployment", "podgrace") == nil {
		t.Fatal("no metrics Service or Deployment for the rules to watch")
	}
	want := map[string]string{
		"PodgraceWebhookFailOpen":    `apiserver_admission_webhook_fail_open_count{name=~"` + mwc.Webhooks[0].Name + `|` + webhook.WorkloadWebhookName + `"}`,
		"PodgraceRequestsNotHandled": `podgrace_requests_not_handled_total{` + job + `}`,
		"PodgraceWebhookErrors":      `controller_runtime_webhook_requests_total{` + job + `,webhook=~"` + webhook.Path + `|` + webhook.WorkloadPath + `",code=~"5.."}`,
		"PodgraceOverloaded":         `podgrace_connections_rejected_total{` + job + `}`,
		"PodgraceNoReadyReplica":     fmt.Sprintf(`kube_deployment_status_replicas_available{namespace=%q,deployment="podgrace"}`, rel.Namespace),
	}
	wantFor := "5m"
	if c.name == "extras" {
		wantFor = "2m"
		if pr.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("PrometheusRule labels %v lack the extra release label", pr.GetLabels())
		}
	}
	seen := map[string]bool{}
	for _, g := range spec.Groups {
		for _, rule := range g.Rules {
			seen[rule.Alert] = true
			if w, ok := want[rule.Alert]; !ok || !strings.Contains(rule.Expr, w) {
				t.Errorf("alert %s: expr %q, want it to watch %s", rule.Alert, rule.Expr, w)
			}
			if rule.Alert != "PodgraceWebhookFailOpen" && rule.For != wantFor {
				t.Errorf("alert %s: for %q, want %q", rule.Alert, rule.For, wantFor)
			}
		}
	}
	for a := range want {
		if !seen[a] {
			t.Errorf("no alert %s", a)
		}
	}
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func flagDuration(t *testing.T, args []string, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(flagValue(args, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func checkWebhookConfiguration(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := chart.Into(r.Find("MutatingWebhookConfiguration", "podgrace"), &mwc); err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	wantFailure := admissionregistrationv1.Ignore
	wantTimeout := webhook.TimeoutSeconds
	if c.name == "extras" {
		wantFailure, wantTimeout = admissionregistrationv1.Fail, 10
	}
	if *w.FailurePolicy != wantFailure || *w.TimeoutSeconds != wantTimeout || *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun ||
		*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("webhook policy differs from docs/design.md §7: failurePolicy %s timeout %d sideEffects %s reinvocation %s versions %v",
			*w.FailurePolicy, *w.TimeoutSeconds, *w.SideEffects, *w.ReinvocationPolicy, w.AdmissionReviewVersions)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].APIGroups, []string{""}) {
		t.Errorf("rules = %+v, want pods CREATE", w.Rules)
	}
	svc := w.ClientConfig.Service
	if w.Name != webhook.WebhookName {
		t.Errorf("webhook name %q, the server answers as %q", w.Name, webhook.WebhookName)
	}
	if svc == nil || *svc.Path != webhook.Path || svc.Namespace != rel.Namespace || r.Find("Service", svc.Name) == nil {
		t.Errorf("clientConfig.service %+v does not point at the chart's Service and /mutate-v1-pod", svc)
	}
	if len(w.ClientConfig.CABundle) != 0 {
		t.Error("the chart sets a caBundle; cainjector or podgrace must own it")
	}
	_, inject := mwc.Annotations["cert-manager.io/inject-ca-from"]
	if inject != c.certManager {
		t.Errorf("cert-manager.io/inject-ca-from present = %t, certManager.enabled = %t", inject, c.certManager)
	}

	sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	ns := func(name string, extra map[string]string) bool {
		l := labels.Set{corev1.LabelMetadataName: name, "team": "a"}
		for k, v := range extra {
			l[k] = v
		}
		return sel.Matches(l)
	}
	enabled := map[string]string{policy.LabelInject: policy.InjectEnabled}
	for _, name := range []string{"kube-system", "kube-public", "kube-node-lease", rel.Namespace} {
		if ns(name, enabled) || ns(name, nil) {
			t.Errorf("namespace %s is selected", name)
		}
	}
	if !ns("shop", enabled) {
		t.Error("a namespace labeled enabled is not selected")
	}
	if ns("shop", map[string]string{policy.LabelInject: policy.InjectDisabled}) {
		t.Error("a namespace labeled disabled is selected")
	}
	if got := ns("shop", nil); got != c.clusterWide {
		t.Errorf("an unlabeled namespace selected = %t, cluster-wide = %t", got, c.clusterWide)
	}
	osel, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
	if err != nil {
		t.Fatal(err)
	}
	if osel.Matches(labels.Set{policy.LabelInject: policy.InjectDisabled}) || !osel.Matches(labels.Set{}) {
		t.Errorf("objectSelector %v does not skip exactly the pods labeled disabled", osel)
	}
	for _, mc := range w.MatchConditions {
		if strings.Contains(mc.Expression, policy.AnnotationStatus) {
			t.Errorf("matchCondition %s skips pods with the status annotation: reinvocation would no longer reach podgrace", mc.Name)
		}
	}
}

func checkRBAC(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	var rules []rbacv1.PolicyRule
	// namespaced[i]: rules[i] is a Role's (the release namespace's only).
	var namespaced []bool
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range r.OfKind(kind) {
			if _, hook := o.GetAnnotations()["helm.sh/hook"]; hook {
				continue // the helm test's own RBAC: checkHelmTest
			}
			var role rbacv1.ClusterRole
			if err := chart.Into(o, &role); err != nil {
				t.Fatal(err)
			}
			rules = append(rules, role.Rules...)
			for range role.Rules {
				namespaced = append(namespaced, kind == "Role")
			}
		}
	}
	var secretsUnscoped, secretsScoped, webhookScoped, probe bool
	var reviews []string
	for i, rule := range rules {
		// The review APIs store nothing: create on them is a question to
		// the API server, needed by secured metrics only.
		review := slices.Equal(rule.Verbs, []string{"create"}) && len(rule.Resources) == 1 &&
			(slices.Equal(rule.APIGroups, []string{"authentication.k8s.io"}) && rule.Resources[0] == "tokenreviews" ||
				slices.Equal(rule.APIGroups, []string{"authorization.k8s.io"}) && rule.Resources[0] == "subjectaccessreviews")
		if review {
			reviews = append(reviews, rule.Resources[0])
		}
		// Events on pods' top-level controllers (docs/design.md §7).
		if slices.Equal(rule.APIGroups, []string{""}) && slices.Equal(rule.Resources, []string{"events"}) &&
			slices.Equal(rule.Verbs, []string{"create", "patch"}) {
			continue
		}
		// hookAction auto's dry-run pod: create on pods, in podgrace's
		// own namespace only.
		if namespaced[i] && slices.Equal(rule.Verbs, []string{"create"}) && slices.Equal(rule.APIGroups, []string{""}) &&
			slices.Equal(rule.Resources, []string{"pods"}) && len(rule.ResourceNames) == 0 {
			probe = true
			continue
		}
		for _, v := range rule.Verbs {
			if v == "*" || v == "create" && !review || v == "delete" || v == "deletecollection" {
				t.Errorf("rule %+v grants %s", rule, v)
			}
		}
		if slices.Contains(rule.Resources, "*") || slices.Contains(rule.APIGroups, "*") {
			t.Errorf("rule %+v uses a wildcard", rule)
		}
		if slices.Contains(rule.Resources, "secrets") {
			if len(rule.ResourceNames) == 0 {
				secretsUnscoped = true
				if !slices.Equal(rule.Verbs, []string{"get"}) {
					t.Errorf("unscoped secrets rule grants %v, want get only", rule.Verbs)
				}
			} else {
				secretsScoped = true
			}
		}
		if slices.Contains(rule.Resources, "mutatingwebhookconfigurations") {
			webhookScoped = slices.Equal(rule.ResourceNames, []string{"podgrace"})
			if !webhookScoped {
				t.Errorf("webhook configuration rule is not scoped to podgrace's own: %+v", rule)
			}
		}
	}
	if probe == c.hookFixed {
		t.Errorf("create on pods in the release namespace: %t with hookAction fixed: %t", probe, c.hookFixed)
	}
	if wantReviews := c.metricsSecure; (len(reviews) == 2) != wantReviews || (len(reviews) != 0) != wantReviews {
		t.Errorf("review permissions %v with metrics.secure = %t", reviews, c.metricsSecure)
	}
	reader := r.Find("ClusterRole", "podgrace-metrics-reader")
	if (reader != nil) != c.metricsSecure {
		t.Errorf("metrics-reader ClusterRole rendered = %t with metrics.secure = %t", reader != nil, c.metricsSecure)
	} else if reader != nil {
		var role rbacv1.ClusterRole
		if err := chart.Into(reader, &role); err != nil {
			t.Fatal(err)
		}
		if want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}; !equality.Semantic.DeepEqual(role.Rules, want) {
			t.Errorf("metrics-reader rules %+v, want %+v", role.Rules, want)
		}
	}
	if secretsUnscoped != c.pullSecrets {
		t.Errorf("cluster-wide Secret read = %t, pullSecrets = %t", secretsUnscoped, c.pullSecrets)
	}
	if secretsScoped == c.certManager || webhookScoped == c.certManager {
		t.Errorf("self-managed CA rules (secret %t, webhook %t) with certManager.enabled = %t", secretsScoped, webhookScoped, c.certManager)
	}
}

func checkTLS(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	certs := r.OfKind("Certificate")
	if !c.certManager {
		if len(certs)+len(r.OfKind("Issuer")) != 0 {
			t.Errorf("cert-manager objects rendered with certManager.enabled=false: %v", kinds(r))
		}
		if s := r.Find("Secret", "podgrace-webhook-tls"); s == nil || s.Object["data"] != nil {
			t.Errorf("self-managed mode needs the empty podgrace-webhook-tls Secret, got %v", s)
		}
		return
	}
	serving := r.Find("Certificate", "podgrace-webhook")
	if serving == nil {
		t.Fatalf("no serving Certificate: %v", kinds(r))
	}
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	if !slices.Contains(dns, "podgrace-webhook.podgrace-system.svc") {
		t.Errorf("serving certificate dnsNames %v lack the Service's name", dns)
	}
	issuer, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name")
	if c.name == "extras" {
		if issuer != "corp-ca" || len(r.OfKind("Issuer")) != 0 {
			t.Errorf("issuerRef not used: issuer %q, Issuers %d", issuer, len(r.OfKind("Issuer")))
		}
	} else if issuer != "podgrace-ca" || r.Find("Issuer", "podgrace-ca") == nil || r.Find("Issuer", "podgrace-selfsigned") == nil || r.Find("Certificate", "podgrace-ca") == nil {
		t.Errorf("no self-signed → CA issuer chain: %v", kinds(r))
	}
}

func checkConfigMap(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	var cm corev1.ConfigMap
	if err := chart.Into(r.Find("ConfigMap", "podgrace"), &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.ParseConfig([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("the rendered cluster config does not parse: %v\n%s", err, cm.Data["config.yaml"])
	}
	want := policy.Default()
	want.ImageInspection.PullSecrets = c.pullSecrets
	want.ImageInspection.Enabled = !c.noInspection
	if c.name == "extras" {
		want.Strict, want.PreStopSleep, want.HookAction = true, "15s", policy.HookExec
		want.SidecarShutdownBudget.Duration, want.MaxGracePeriod.Duration = 20*time.Second, 5*time.Minute
		want.SleepRunToCompletion, want.Sidecars = true, []string{"envoy"}
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("rendered config = %+v\nwant %+v", cfg, want)
	}
}

// TestConfigDefaults: values.yaml's `config:` holds every key of the cluster
// config, each with the default of policy.Default (docs/design.md §4–6): no default
// is left to the binary, and none differs from it.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	vals, err := chart.ReadValues(chartDir(t) + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yaml.Marshal(vals["config"])
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.ParseConfig(doc)
	if err != nil {
		t.Fatalf("values.yaml config: %v", err)
	}
	if !reflect.DeepEqual(cfg, policy.Default()) {
		t.Errorf("values.yaml config = %+v\npolicy.Default() = %+v", cfg, policy.Default())
	}
	defJSON, err := json.Marshal(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	var def map[string]any
	if err := json.Unmarshal(defJSON, &def); err != nil {
		t.Fatal(err)
	}
	got, want := keyPaths("", vals["config"]), keyPaths("", def)
	if !slices.Equal(got, want) {
		t.Errorf("values.yaml config keys %v\npolicy.Config keys %v", got, want)
	}
}

func keyPaths(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return []string{prefix}
	}
	var out []string
	for k, sub := range m {
		out = append(out, keyPaths(strings.TrimPrefix(prefix+"."+k, "."), sub)...)
	}
	sort.Strings(out)
	return out
}

// TestSchemaRejects: values.schema.json stops typos and invalid settings
// before anything reaches the cluster.
func TestSchemaRejects(t *testing.T) {
	t.Parallel()
	bad := map[string]map[string]any{
		"unknown top-level key":   {"replicas": 3},
		"unknown config key":      {"config": map[string]any{"preStopSleeps": "auto"}},
		"mode":                    {"webhook": map[string]any{"mode": "everywhere"}},
		"failurePolicy":           {"webhook": map[string]any{"failurePolicy": "Maybe"}},
		"timeout over 30":         {"webhook": map[string]any{"timeoutSeconds": 31}},
		"zero replicas":           {"replicaCount": 0},
		"ratio type":              {"config": map[string]any{"ratio": "half"}},
		"preStopSleep":            {"config": map[string]any{"preStopSleep": "soon"}},
		"duration":                {"config": map[string]any{"min": "5 seconds"}},
		"hookAction":              {"config": map[string]any{"hookAction": "wait"}},
		"sidecar name":            {"config": map[string]any{"sidecars": []any{"Not_A_Name"}}},
		"maxGracePeriod fraction": {"config": map[string]any{"maxGracePeriod": "1.5s"}},
		"sidecarShutdownBudget":   {"config": map[string]any{"sidecarShutdownBudget": "5 seconds"}},
		"sleepRunToCompletion":    {"config": map[string]any{"sleepRunToCompletion": "yes"}},
		"issuerRef without name":  {"certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer"}}},
		"digest":                  {"image": map[string]any{"digest": "latest"}},
		"metrics.secure type":     {"metrics": map[string]any{"secure": "yes"}},
		"scrape interval":         {"metrics": map[string]any{"serviceMonitor": map[string]any{"interval": "30 seconds"}}},
		"ServiceMonitor label":    {"metrics": map[string]any{"serviceMonitor": map[string]any{"labels": map[string]any{"release": 1}}}},
		"PrometheusRule for":      {"metrics": map[string]any{"prometheusRule": map[string]any{"for": "soon"}}},
		"PrometheusRule enabled":  {"metrics": map[string]any{"prometheusRule": map[string]any{"enabled": "yes"}}},
		"enforcement":             {"config": map[string]any{"enforcement": "audit"}},
		// The inspection deadline must fit 1s below the webhook's timeout
		// (the binary's policy.CheckWebhookTimeout; issue 23).
		"inspection over timeout": {"config": map[string]any{"imageInspection": map[string]any{"timeout": "8s"}}, "webhook": map[string]any{"timeoutSeconds": 5}},
		"inspection at timeout":   {"config": map[string]any{"imageInspection": map[string]any{"timeout": "4500ms"}}, "webhook": map[string]any{"timeoutSeconds": 5}},
		"insecure registry URL":   {"config": map[string]any{"imageInspection": map[string]any{"insecureRegistries": []any{"http://10.0.0.5:5000"}}}},
		"cacheBytes unit":         {"config": map[string]any{"imageInspection": map[string]any{"cacheBytes": "16MB"}}},
		"forged reviews type":     {"imageInspection": map[string]any{"pullSecretsAllowForgedReviews": "yes"}},
	}
	for name, values := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := chart.Render(chartDir(t), rel, values); err == nil {
				t.Errorf("values %v were accepted", values)
			} else {
				t.Logf("rejected: %v", err)
			}
		})
	}
}

// TestPullSecretsNeedTrustedCaller: with pullSecrets a forged review could
// read any namespace's pull secrets (issue 23), so the chart renders it only
// with a client certificate, a NetworkPolicy admitting only the control
// plane, or the acknowledgement that names the risk.
func TestPullSecretsNeedTrustedCaller(t *testing.T) {
	t.Parallel()
	ps := map[string]any{"imageInspection": map[string]any{"pullSecrets": true}}
	apiServer := []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.10/32"}}}
	for name, tc := range map[string]struct {
		values map[string]any
		ok     bool
	}{
		"alone":                  {map[string]any{"config": ps}, false},
		"network policy, anyone": {map[string]any{"config": ps, "networkPolicy": map[string]any{"enabled": true}}, false},
		"client auth without CA": {map[string]any{"config": ps, "webhook": map[string]any{"clientAuth": map[string]any{"enabled": true}}}, false},
		"client auth":            {map[string]any{"config": ps, "webhook": map[string]any{"clientAuth": map[string]any{"enabled": true, "caSecret": "ca"}}}, true},
		"control-plane policy":   {map[string]any{"config": ps, "networkPolicy": map[string]any{"enabled": true, "webhookFrom": apiServer}}, true},
		"acknowledged":           {map[string]any{"config": ps, "imageInspection": map[string]any{"pullSecretsAllowForgedReviews": true}}, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := chart.Render(chartDir(t), rel, tc.values)
			if tc.ok != (err == nil) {
				t.Fatalf("rendered %t, want %t: %v", err == nil, tc.ok, err)
			}
			if err != nil && !strings.Contains(err.Error(), "pullSecretsAllowForgedReviews") && !strings.Contains(err.Error(), "caSecret") {
				t.Errorf("the refusal does not say what to do: %v", err)
			}
			if name != "client auth" {
				return
			}
			var d appsv1.Deployment
			if err := chart.Into(r.Find("Deployment", "podgrace"), &d); err != nil {
				t.Fatal(err)
			}
			c := d.Spec.Template.Spec.Containers[0]
			if !slices.Contains(c.Args, "--client-ca-file=/etc/podgrace/client-ca/ca.crt") ||
				!slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "ca" }) {
				t.Errorf("client auth: args %q volumes %+v", c.Args, d.Spec.Template.Spec.Volumes)
			}
		})
	}
}

// The PodDisruptionBudget keeps one of the two replicas.
func TestPodDisruptionBudget(t *testing.T) {
	t.Parallel()
	var pdb policyv1.PodDisruptionBudget
	if err := chart.Into(render(t, rel, nil).Find("PodDisruptionBudget", "podgrace"), &pdb); err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "podgrace" {
		t.Errorf("PodDisruptionBudget %+v", pdb.Spec)
	}
	if r := render(t, rel, map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}}); r.Find("PodDisruptionBudget", "podgrace") != nil {
		t.Error("podDisruptionBudget.enabled=false still renders one")
	}
}

// TestWebhookForTests: chart.Webhook, how the other suites register their
// own podgrace, is the chart's registration with only the client config
// swapped for a URL, in both modes and with extra namespace expressions.
func TestWebhookForTests(t *testing.T) {
	t.Parallel()
	extra := []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a"}}}
	for _, clusterWide := range []bool{false, true} {
		mode := map[bool]string{false: "opt-in", true: "cluster-wide"}[clusterWide]
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var want admissionregistrationv1.MutatingWebhookConfiguration
			r := render(t, rel, map[string]any{"webhook": map[string]any{"mode": mode,
				"namespaceSelectorExpressions": []any{map[string]any{"key": "team", "operator": "In", "values": []any{"a"}}}}})
			if err := chart.Into(r.Find("MutatingWebhookConfiguration", "podgrace"), &want); err != nil {
				t.Fatal(err)
			}
			got, err := chart.Webhook(chartDir(t), chart.WebhookOptions{
				URL: "https://127.0.0.1:9443" + webhook.Path, CABundle: []byte("pem"), ClusterWide: clusterWide, ExtraNamespaceSelector: extra,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != "podgrace" || len(got.Webhooks) != 1 || *got.Webhooks[0].ClientConfig.URL != "https://127.0.0.1:9443"+webhook.Path ||
				string(got.Webhooks[0].ClientConfig.CABundle) != "pem" || got.Webhooks[0].ClientConfig.Service != nil {
				t.Fatalf("chart.Webhook = %s with %+v", got.Name, got.Webhooks)
			}
			got.Webhooks[0].ClientConfig = want.Webhooks[0].ClientConfig
			if !reflect.DeepEqual(got.Webhooks, want.Webhooks) {
				gotJSON, _ := json.MarshalIndent(got.Webhooks, "", "  ")
				wantJSON, _ := json.MarshalIndent(want.Webhooks, "", "  ")
				t.Errorf("chart.Webhook differs from the chart's registration:\ngot:   %s\nchart: %s", gotJSON, wantJSON)
			}
		})
	}
}

// checkHelmTest: the `helm test` pod runs podgrace's image, restricted, and
// it and its RBAC are test hooks (they exist only while the test runs).
func checkHelmTest(t *testing.T, r *chart.Rendered) {
	t.Helper()
	for _, kind := range []string{"Pod", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		o := r.Find(kind, "podgrace-test")
		if o == nil {
			t.Errorf("no %s/podgrace-test (helm test)", kind)
			continue
		}
		if o.GetAnnotations()["helm.sh/hook"] != "test" {
			t.Errorf("%s/podgrace-test is not a helm test hook: %v", kind, o.GetAnnotations())
		}
	}
	var p corev1.Pod
	if err := chart.Into(r.Find("Pod", "podgrace-test"), &p); err != nil {
		t.Fatal(err)
	}
	c := p.Spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		p.Spec.SecurityContext == nil || p.Spec.SecurityContext.RunAsNonRoot == nil || !*p.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("the helm test pod is not restricted: %+v %+v", p.Spec.SecurityContext, c.SecurityContext)
	}
	if c.Args[0] != "selftest" {
		t.Errorf("the helm test runs %v, want podgrace selftest", c.Args)
	}
	var d appsv1.Deployment
	if err := chart.Into(r.Find("Deployment", "podgrace"), &d); err != nil {
		t.Fatal(err)
	}
	if c.Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("the helm test runs %s, not podgrace's image %s", c.Image, d.Spec.Template.Spec.Containers[0].Image)
	}
}

// checkWorkloadCheck: the workload check (docs/design.md §7) covers every
// workload kind of pkg/workload on CREATE and UPDATE, fails open, and
// selects the same namespaces as the pod webhook.
func checkWorkloadCheck(t *testing.T, r *chart.Rendered) {
	t.Helper()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := chart.Into(r.Find("ValidatingWebhookConfiguration", "podgrace"), &vwc); err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := chart.Into(r.Find("MutatingWebhookConfiguration", "podgrace"), &mwc); err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) != 1 {
		t.Fatalf("%d workload webhooks", len(vwc.Webhooks))
	}
	w := vwc.Webhooks[0]
	if w.Name != webhook.WorkloadWebhookName || *w.FailurePolicy != admissionregistrationv1.Ignore || w.ClientConfig.Service == nil || *w.ClientConfig.Service.Path != webhook.WorkloadPath {
		t.Errorf("workload webhook %s failurePolicy %s clientConfig %+v", w.Name, *w.FailurePolicy, w.ClientConfig)
	}
	if !equality.Semantic.DeepEqual(w.NamespaceSelector, mwc.Webhooks[0].NamespaceSelector) {
		t.Errorf("the workload check selects other namespaces than the pod webhook:\n%v\n%v", w.NamespaceSelector, mwc.Webhooks[0].NamespaceSelector)
	}
	covered := map[string]bool{}
	for _, rule := range w.Rules {
		if !slices.Equal(rule.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) {
			t.Errorf("rule %+v: operations %v, want CREATE and UPDATE", rule, rule.Operations)
		}
		for _, g := range rule.APIGroups {
			for _, v := range rule.APIVersions {
				for _, res := range rule.Resources {
					covered[schema.GroupVersionResource{Group: g, Version: v, Resource: res}.String()] = true
				}
			}
		}
	}
	for _, k := range workload.Kinds {
		if len(k.Template) == 0 {
			continue // a Pod: the pod webhook's
		}
		if gvr := k.GroupVersionResource().String(); !covered[gvr] {
			t.Errorf("the workload check does not cover %s", gvr)
		}
	}
}
