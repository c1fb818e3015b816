package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/pkg/audit"
	"github.com/podgrace/podgrace/pkg/cli"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// TestAuditLive builds a namespace as a cluster has it when podgrace is
// turned on late: a Deployment whose first two pods were created before the
// namespace opted in, a third pod created through the webhook afterwards, a
// bare pod, a StatefulSet and a CronJob's pod; then runs `podgrace audit` as
// a user would (a kubeconfig, -n, -o json, --fail-on).
func TestAuditLive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns := namespace(t, nil, nil) // not opted in yet
	_, rs := deployment(t, ns, "web", 3)
	if _, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rsPod := func() *corev1.Pod {
		p := pod("", 30)
		p.GenerateName = rs.Name + "-"
		p.Labels = rs.Spec.Template.Labels
		p.OwnerReferences = []metav1.OwnerReference{controllerRef(rs.Name, rs.UID, "ReplicaSet")}
		got, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	early := []*corev1.Pod{rsPod(), rsPod()}
	for _, p := range early {
		if _, ok := p.Annotations[policy.AnnotationStatus]; ok {
			t.Fatalf("pod %s mutated before the opt-in", p.Name)
		}
	}

	// Opt in, as an operator does: label the namespace.
	nsObj, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels[policy.LabelInject] = policy.InjectEnabled
	if _, err := admin.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitForMutation(ctx, ns); err != nil {
		t.Fatal(err)
	}
	late := rsPod()
	if _, ok := late.Annotations[policy.AnnotationStatus]; !ok {
		t.Fatal("the pod created after the opt-in was not mutated")
	}
	bare, err := admin.CoreV1().Pods(ns).Create(ctx, pod("bare", 30), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := admin.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "registry.example/db:1", Command: []string{"postgres"}}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stsPod := pod(sts.Name+"-0", 30, sts.Spec.Template.Spec.Containers...)
	stsPod.Labels = sts.Spec.Template.Labels
	stsPod.OwnerReferences = []metav1.OwnerReference{controllerRef(sts.Name, sts.UID, "StatefulSet")}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, stsPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cronJob(t, ns, "report")

	kubeconfig := writeKubeconfig(t, restConfig)
	code, stdout, stderr := runAudit(t, "audit", "--kubeconfig", kubeconfig, "-n", ns, "-o", "json")
	if code != 0 {
		t.Fatalf("audit exit %d: %s", code, stderr)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if rep.APIVersion != audit.APIVersion || rep.Kind != audit.Kind || rep.Source != "cluster" {
		t.Errorf("report identity %s %s %s", rep.APIVersion, rep.Kind, rep.Source)
	}
	got := map[string]*audit.Workload{}
	for i := range rep.Workloads {
		w := &rep.Workloads[i]
		got[w.Kind+"/"+w.Name] = w
	}
	if len(rep.Workloads) != 4 {
		t.Errorf("workloads %v, want Deployment/web, StatefulSet/db, CronJob/report, Pod/bare (the ReplicaSet and the Job are audited through their owners)", keys(got))
	}
	web := got["Deployment/web"]
	if web == nil {
		t.Fatalf("no Deployment/web in %v", keys(got))
	}
	if web.Served != audit.ServedYes || !strings.Contains(web.ServedReason, "podgrace") {
		t.Errorf("web served %s (%s)", web.Served, web.ServedReason)
	}
	p := web.Pods
	if p == nil || p.Total != 3 || p.Mutated != 1 || p.Unmutated != 2 || p.WouldChange != 2 {
		t.Fatalf("web pods %+v, want 3 pods: 1 mutated, 2 unmutated that podgrace would change", p)
	}
	if len(p.StatusVersions) != 1 || p.StatusVersions[statusVersion(t, late)] != 1 {
		t.Errorf("status versions %v, want the version of %s's record", p.StatusVersions, late.Name)
	}
	if len(p.UnmutatedPods) != 2 || !p.UnmutatedPods[0].Created.Equal(&early[0].CreationTimestamp) && !p.UnmutatedPods[0].Created.Equal(&early[1].CreationTimestamp) {
		t.Errorf("unmutated pods %+v, want %s and %s with their creation times", p.UnmutatedPods, early[0].Name, early[1].Name)
	}
	wantChanges := []string{"add preStop sleep 15s to app", "drop the shell of app (exec form)"}
	if fmt.Sprint(web.Changes) != fmt.Sprint(wantChanges) {
		t.Errorf("web changes %q, want %q", web.Changes, wantChanges)
	}
	risks := map[string]audit.Risk{}
	for _, r := range web.Risks {
		risks[r.Type] = r
	}
	if r := risks[audit.RiskNoPreStop]; !r.FixedByPodgrace || r.Remains {
		t.Errorf("no-prestop risk %+v: the Service selects web and podgrace adds the sleep", r)
	}
	if r := risks[audit.RiskNoReadiness]; r.FixedByPodgrace || !r.Remains {
		t.Errorf("no-readiness risk %+v: podgrace cannot add a probe", r)
	}
	if r := risks[audit.RiskShellPID1]; !r.FixedByPodgrace || r.Remains {
		t.Errorf("shell-pid1 risk %+v: podgrace drops the shell", r)
	}
	if b := got["Pod/"+bare.Name]; b == nil || b.Pods == nil || b.Pods.Mutated != 1 || b.Pods.WouldChange != 0 || len(b.Changes) != 0 {
		t.Errorf("bare pod %+v: mutated, nothing left to change", b)
	}
	if c := got["CronJob/report"]; c == nil || c.Pods == nil || c.Pods.Total != 1 {
		t.Errorf("CronJob/report %+v: its Job's pod belongs to it", c)
	}
	if s := got["StatefulSet/db"]; s == nil || s.Pods == nil || s.Pods.Mutated != 1 {
		t.Errorf("StatefulSet/db %+v", s)
	}
	if rep.Summary.UnmutatedPods != 2 {
		t.Errorf("summary %+v, want 2 unmutated pods", rep.Summary)
	}

	// The table, and --fail-on for CI.
	code, stdout, stderr = runAudit(t, "audit", "--kubeconfig", kubeconfig, "-n", ns, "--fail-on=unmutated")
	if code != cli.ExitFindings || !strings.Contains(stderr, "2 pods of served workloads without podgrace's mutation") {
		t.Errorf("--fail-on=unmutated: exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "Deployment/web") || !strings.Contains(stdout, "1/3") {
		t.Errorf("table:\n%s", stdout)
	}
	for _, p := range early {
		if err := admin.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, stderr := runAudit(t, "audit", "--kubeconfig", kubeconfig, "-n", ns, "--fail-on=unmutated"); code != 0 {
		t.Errorf("after deleting the unmutated pods: exit %d, %s", code, stderr)
	}
	if code, _, _ := runAudit(t, "audit", "--kubeconfig", kubeconfig, "-n", ns, "--fail-on=risk"); code != cli.ExitFindings {
		t.Errorf("--fail-on=risk: exit %d, want %d (web has no readiness probe)", code, cli.ExitFindings)
	}
}

// TestAuditPagination: the audit reads pods page by page, with as many
// requests as pages, however many pods there are.
func TestAuditPagination(t *testing.T) {
	t.Parallel()
	const pods, chunk = 1200, 500
	ns := namespace(t, nil, nil)
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < pods; i += 8 {
				p := pod(fmt.Sprintf("p-%04d", i), 30)
				if _, err := admin.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var total, podLists atomic.Int64
	var limits sync.Map
	cfg := rest.CopyConfig(restConfig)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			total.Add(1)
			if r.URL.Path == "/api/v1/namespaces/"+ns+"/pods" {
				podLists.Add(1)
				limits.Store(r.URL.Query().Get("limit"), true)
			}
			return rt.RoundTrip(r)
		})
	}
	rep := audit.Scan(t.Context(), kubernetes.NewForConfigOrDie(cfg), audit.LiveOptions{
		Env: audit.Env{Config: ptr.To(baseConfig()), HookAction: policy.HookSleep}, Namespace: ns, ChunkSize: chunk,
	})
	if len(rep.Workloads) != pods || rep.Summary.Errors != 0 {
		t.Fatalf("%d workloads, %d errors %v; want %d bare pods", len(rep.Workloads), rep.Summary.Errors, rep.Errors, pods)
	}
	wantPages := int64((pods + chunk - 1) / chunk)
	if podLists.Load() != wantPages {
		t.Errorf("%d pod list requests for %d pods, want %d pages of %d", podLists.Load(), pods, wantPages, chunk)
	}
	if _, ok := limits.Load(fmt.Sprint(chunk)); !ok {
		t.Errorf("pod lists did not ask for limit=%d", chunk)
	}
	// One list each of every workload kind but pods, of webhook
	// configurations, services and ingresses, and the namespace.
	if want := wantPages + int64(len(workload.Kinds)-1) + 4; total.Load() != want {
		t.Errorf("%d requests in all, want %d", total.Load(), want)
	}
	t.Logf("%d pods audited with %d requests (%d pod pages)", pods, total.Load(), podLists.Load())
}

// TestAuditForbiddenNamespace: a user bound to the documented ClusterRole in
// one namespace only audits that namespace with -A; every other namespace is
// named as forbidden and the scan goes on.
func TestAuditForbiddenNamespace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	allowed := namespace(t, optedIn(), nil)
	if err := waitForMutation(ctx, allowed); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Pods(allowed).Create(ctx, pod("app", 30), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hidden := namespace(t, optedIn(), nil)
	if _, err := admin.CoreV1().Pods(hidden).Create(ctx, pod("secret", 30), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	role := createAuditRole(t, "podgrace-audit-"+allowed)
	user := "auditor-" + allowed
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user, APIGroup: rbacv1.GroupName}}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}
	if _, err := admin.RbacV1().RoleBindings(allowed).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "audit"}, Subjects: subject, RoleRef: ref,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The cluster-scoped reads, as docs/operate/audit.md says.
	clusterReads := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-cluster"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"list"}},
	}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, clusterReads, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterReads.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterReads.Name}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoles().Delete(context.Background(), clusterReads.Name, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})

	code, stdout, stderr := runAudit(t, "audit", "--kubeconfig", writeKubeconfig(t, restConfig), "--as", user, "-A", "-o", "json", "--fail-on=error")
	if code != cli.ExitFindings {
		t.Errorf("--fail-on=error: exit %d, want %d\n%s", code, cli.ExitFindings, stderr)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	var sawAllowed, sawHidden bool
	for _, w := range rep.Workloads {
		sawAllowed = sawAllowed || w.Namespace == allowed && w.Name == "app" && w.Pods != nil && w.Pods.Mutated == 1
		sawHidden = sawHidden || w.Namespace == hidden
	}
	if !sawAllowed || sawHidden {
		t.Errorf("workloads %+v: want %s's pod and nothing of %s", rep.Workloads, allowed, hidden)
	}
	forbidden := map[string]bool{}
	for _, e := range rep.Errors {
		if e.Resource == "pods" && strings.Contains(e.Message, "forbidden") {
			forbidden[e.Namespace] = true
		}
	}
	if !forbidden[hidden] || forbidden[allowed] {
		t.Errorf("pod list errors by namespace %v: want %s forbidden, %s read", forbidden, hidden, allowed)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// runAudit runs the podgrace command line in process.
func runAudit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"podgrace"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// writeKubeconfig writes a kubeconfig for the suite's API server and admin user.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// cronJob creates a CronJob, the Job its controller would create and the Job's pod.
func cronJob(t *testing.T, ns, name string) {
	t.Helper()
	ctx := t.Context()
	spec := batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure,
		Containers: []corev1.Container{{Name: "report", Image: "registry.example/report:1", Command: []string{"/report"}}}}}}
	cj, err := admin.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       batchv1.CronJobSpec{Schedule: "0 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: spec}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := admin.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true)}}},
		Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := pod("", 30, spec.Template.Spec.Containers...)
	p.GenerateName = job.Name + "-"
	p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	p.Labels = job.Spec.Template.Labels
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// statusVersion is the format version of a pod's status record, as the
// audit reports it ("0" for a record without one).
func statusVersion(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	var v struct {
		V json.Number `json:"v"`
	}
	if err := json.Unmarshal([]byte(p.Annotations[policy.AnnotationStatus]), &v); err != nil {
		t.Fatal(err)
	}
	if v.V == "" {
		return "0"
	}
	return v.V.String()
}

func keys(m map[string]*audit.Workload) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestAuditCoversEveryKind: `podgrace audit` of a live cluster reports one
// object of every kind of the workload table, created on the real API server
// from the table's own path to its pod template.
func TestAuditCoversEveryKind(t *testing.T) {
	t.Parallel()
	ns := namespace(t, nil, nil)
	dyn := dynamic.NewForConfigOrDie(restConfig)
	for _, k := range workload.Kinds {
		obj := workloadObject(k, "w")
		if _, err := dyn.Resource(k.GroupVersionResource()).Namespace(ns).Create(t.Context(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", k.Kind, err)
		}
	}
	rep := audit.Scan(t.Context(), admin, audit.LiveOptions{
		Env: audit.Env{Config: ptr.To(baseConfig()), HookAction: policy.HookSleep}, Namespace: ns,
	})
	got := map[string]bool{}
	for _, w := range rep.Workloads {
		if len(w.Changes) == 0 {
			t.Errorf("%s/%s: no change found: %+v", w.Kind, w.Name, w)
		}
		got[w.Kind] = true
	}
	for _, k := range workload.Kinds {
		if !got[k.Kind] {
			t.Errorf("the audit does not report the %s %s; report %+v", k.APIVersion, k.Kind, rep)
		}
	}
}

// workloadObject is a valid object of a workload kind whose pod has no
// preStop hook yet, its template at the table's path.
func workloadObject(k workload.Kind, name string) map[string]any {
	// An explicit sleep: run-to-completion pods (a Pod, Job or CronJob
	// with restartPolicy Never) get no default one (docs/design.md §2).
	obj, err := workloadOf(k, name, corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{policy.AnnotationPreStopSleep: "10s"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Command: []string{"/app"}}}},
	})
	if err != nil {
		panic(err) // a PodTemplateSpec always converts
	}
	return obj
}

// workloadOf is a valid object of a workload kind around a pod template,
// as a user writes it: the pod labeled app=name and selected by it,
// restartPolicy Never for a Pod, Job or CronJob (Always otherwise), a
// CronJob scheduled.
func workloadOf(k workload.Kind, name string, tmpl corev1.PodTemplateSpec) (map[string]any, error) {
	tmpl = *tmpl.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels["app"] = name
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
	if k.Kind == "Pod" || k.Kind == "Job" || k.Kind == "CronJob" {
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	pod, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tmpl)
	if err != nil {
		return nil, err
	}
	obj := k.Object(name, pod)
	spec, _ := obj["spec"].(map[string]any)
	labels := map[string]any{"app": name}
	switch k.Kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		spec["selector"] = map[string]any{"matchLabels": labels}
	case "ReplicationController":
		spec["selector"] = labels
	case "CronJob":
		spec["schedule"] = "0 0 * * *"
	}
	return obj, nil
}

// TestAuditFindsInstallation: without --config-map, `podgrace audit` reads
// the cluster config of the podgrace the cluster names: the namespace of the
// service of its webhook, the ConfigMap named as its configuration.
func TestAuditFindsInstallation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	home := namespace(t, nil, nil)
	const hook = "discover.podgrace.dev" // not podgrace's name: other tests' audits must not see it
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "podgrace-" + home},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    hook,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: home, Name: "podgrace-webhook"}},
			Rules:                   []admissionregistrationv1.RuleWithOperations{},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
		}},
	}
	if _, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})
	if _, err := admin.CoreV1().ConfigMaps(home).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: mwc.Name}, Data: map[string]string{"config.yaml": "preStopSleep: 7s\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apps := namespace(t, nil, nil)
	if _, err := admin.CoreV1().Pods(apps).Create(ctx, pod("app", 30), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAudit(t, "audit", "--kubeconfig", writeKubeconfig(t, restConfig), "-n", apps, "--webhook-name", hook, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Workloads) != 1 || !slices.ContainsFunc(rep.Workloads[0].Changes, func(c string) bool { return strings.Contains(c, "sleep 7s") }) {
		t.Errorf("the audit did not use %s/%s's config (preStopSleep 7s): %+v; stderr %s", home, mwc.Name, rep.Workloads, errOut)
	}
}
