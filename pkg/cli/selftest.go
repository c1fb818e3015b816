package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

type selftestOptions struct {
	loading   *clientcmd.ClientConfigLoadingRules
	overrides clientcmd.ConfigOverrides
	namespace string
	label     string
	timeout   time.Duration
}

// newSelftestCommand is the chart's `helm test` hook: it proves a fresh
// install mutates pods.
func newSelftestCommand() *cobra.Command {
	o := &selftestOptions{loading: clientcmd.NewDefaultClientConfigLoadingRules()}
	cmd := &cobra.Command{
		Use:   "selftest",
		Short: "Prove podgrace mutates pods in this cluster (the chart's helm test)",
		Long: `selftest does a server-side dry-run create of a pod in a namespace podgrace
serves, and checks that the API server returned it with podgrace's preStop
sleep and status annotation. Without --target-namespace it creates a namespace
labeled podgrace.dev/inject=enabled and deletes it afterwards. When the pod
comes back unmutated it names the likely cause (the webhook unreachable: the
pod was admitted by failurePolicy Ignore; the namespace not selected) and
exits 1. Nothing is left behind: the pod is a dry run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file (in a pod: its ServiceAccount)")
	clientcmd.BindOverrideFlags(&o.overrides, f, clientcmd.RecommendedConfigOverrideFlags(""))
	f.StringVar(&o.namespace, "target-namespace", "", "a namespace podgrace serves to dry-run the pod in (default: create a labeled one, delete it afterwards)")
	f.StringVar(&o.label, "namespace-label", policy.LabelInject+"="+policy.InjectEnabled, "label of the namespace selftest creates")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to retry while a new namespace is not served yet")
	return cmd
}

func (o *selftestOptions) run(cmd *cobra.Command) error {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.loading, &o.overrides)
	rc, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	ns := o.namespace
	if ns == "" {
		k, v, _ := strings.Cut(o.label, "=")
		created, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			GenerateName: "podgrace-selftest-", Labels: map[string]string{k: v},
		}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("selftest: creating a namespace to test in: %w", err)
		}
		ns = created.Name
		defer func() {
			_ = cs.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{})
		}()
	}
	out := cmd.OutOrStdout()
	_, _ = fmt.Fprintf(out, "selftest: dry-run creating a pod in namespace %s\n", ns)
	// The API server's webhook selection follows namespaces through an
	// informer: a namespace created a moment ago may not be selected yet.
	deadline := time.Now().Add(o.timeout)
	var last error
	for {
		last = o.try(ctx, cs, ns)
		if last == nil {
			_, _ = fmt.Fprintln(out, "selftest: OK: podgrace added its preStop sleep and status annotation")
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("selftest: FAILED: %w", last)
}

// try dry-runs one pod and checks podgrace's mutation.
func (o *selftestOptions) try(ctx context.Context, cs kubernetes.Interface, ns string) error {
	grace := int64(30)
	got, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "podgrace-selftest-"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "app", Image: "registry.invalid/podgrace-selftest:1", Command: []string{"/app"}}},
		},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "podgrace-selftest"})
	if err != nil {
		return fmt.Errorf("the dry-run create was refused: %w", err)
	}
	raw, ok := got.Annotations[policy.AnnotationStatus]
	if !ok {
		return fmt.Errorf("the pod came back without %s: podgrace did not mutate it. Likely: the webhook is unreachable "+
			"(no ready replica, a NetworkPolicy, an untrusted certificate; the API server then admits pods unmutated under failurePolicy Ignore: "+
			"see apiserver_admission_webhook_fail_open_count) or namespace %s is not selected (its labels, webhook.mode, excludeNamespaces). "+
			"Run `podgrace explain` on a pod there, and see docs/operate/troubleshooting.md", policy.AnnotationStatus, ns)
	}
	var st inject.Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return fmt.Errorf("%s is not podgrace's JSON: %w", policy.AnnotationStatus, err)
	}
	c := got.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || (c.Lifecycle.PreStop.Sleep == nil && c.Lifecycle.PreStop.Exec == nil) {
		return fmt.Errorf("the pod has %s %s but no preStop sleep (check the cluster config and the namespace's podgrace.dev/prestop-sleep)", policy.AnnotationStatus, raw)
	}
	return nil
}
