//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/audit"
	"github.com/podgrace/podgrace/pkg/cli"
)

// TestFailOpen makes podgrace unreachable (scaled to 0, its pods killed)
// and creates pods in an opted-in namespace: under failurePolicy Ignore
// the API server admits them unmutated and counts it in its own
// apiserver_admission_webhook_fail_open_count for podgrace's webhook, which
// the chart's PrometheusRule alerts on; `podgrace audit --fail-on=unmutated`
// then finds those pods. podgrace is scaled back when the test ends.
func TestFailOpen(t *testing.T) {
	requirePodgrace(t)
	ctx := context.Background()
	ns := newNamespace(t, "e2e-failopen", true)

	mwc, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, pg.Webhook, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wh := mwc.Webhooks[0]
	before := failOpenCount(t, wh.Name)
	restore := podgraceDown(t)

	// Pods are created until two are admitted without podgrace's status.
	var unmutated []string
	start := time.Now()
	for i := 0; len(unmutated) < 2 && time.Since(start) < 3*time.Minute; i++ {
		pod, err := kube.CoreV1().Pods(ns).Create(ctx, probePod(fmt.Sprintf("p-%03d", i)), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating a pod while podgrace is unreachable (failurePolicy Ignore must admit it): %v", err)
		}
		if _, ok := pod.Annotations[statusAnnotation]; !ok {
			unmutated = append(unmutated, pod.Name)
		} else {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if len(unmutated) == 0 {
		t.Fatalf("no pod was admitted unmutated within %s of scaling podgrace to 0", time.Since(start).Round(time.Second))
	}
	t.Logf("%d pods admitted unmutated within %.1fs of scaling podgrace to 0", len(unmutated), time.Since(start).Seconds())

	after := failOpenCount(t, wh.Name)
	if after-before < float64(len(unmutated)) {
		t.Errorf("apiserver_admission_webhook_fail_open_count{name=%q} went from %v to %v; want a rise of at least %d (the unmutated pods)",
			wh.Name, before, after, len(unmutated))
	}
	t.Logf("RESULT fail-open: apiserver_admission_webhook_fail_open_count{name=%q,type=\"admit\"} %v → %v for %d unmutated pods", wh.Name, before, after, len(unmutated))

	// podgrace back: the pods created in the outage stay unmutated, and
	// the audit finds them.
	restore()
	var out, errOut bytes.Buffer
	code := cli.Main([]string{"podgrace", "audit", "--kubeconfig", env.Kubeconfig, "-n", ns, "-o", "json", "--fail-on=unmutated",
		"--config-map", pg.Namespace + "/" + pg.Deployment}, strings.NewReader(""), &out, &errOut)
	if code != cli.ExitFindings {
		t.Errorf("podgrace audit --fail-on=unmutated: exit %d, want %d; stderr:\n%s", code, cli.ExitFindings, errOut.String())
	}
	var rep audit.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var found []string
	for _, w := range rep.Workloads {
		if w.Served == audit.ServedYes && w.Pods != nil {
			for _, p := range w.Pods.UnmutatedPods {
				found = append(found, p.Name)
			}
		}
	}
	for _, name := range unmutated {
		if !slices.Contains(found, name) {
			t.Errorf("audit did not report %s as unmutated (it reported %v)", name, found)
		}
	}
	t.Logf("audit: exit %d, %d unmutated pods of served workloads: %v", code, rep.Summary.UnmutatedPods, found)
}

// failOpenCount reads the API server's fail-open counter for a webhook.
func failOpenCount(t *testing.T, webhook string) float64 {
	t.Helper()
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("scraping the API server's /metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, m := range fams["apiserver_admission_webhook_fail_open_count"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["name"] == webhook && labels["type"] == "admit" {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}
