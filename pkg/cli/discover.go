package cli

import (
	"context"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/registration"
)

// installation is where podgrace runs in a cluster, as the cluster says.
type installation struct {
	// Namespace is podgrace's namespace.
	Namespace string
	// ConfigMap names the ConfigMap holding config.yaml ("" when podgrace
	// runs as admission policies, which have none).
	ConfigMap string
	// From says what told: the object read, or that nothing did.
	From string
}

// defaultInstallation is the README's install: `helm install podgrace
// charts/podgrace --namespace podgrace-system`.
var defaultInstallation = installation{Namespace: registration.DefaultNamespace, ConfigMap: "podgrace", From: "default"}

// findInstallation asks the cluster where podgrace runs: the service of the
// webhook named webhookName in a MutatingWebhookConfiguration (the chart
// names the ConfigMap as the configuration: TestConfigMapNamedAsWebhook in
// test/chart), else the parameters of podgrace's MutatingAdmissionPolicyBinding
// (admission: policy), else defaultInstallation. Every CLI command that needs
// podgrace's namespace uses it, so that none guesses another one.
func findInstallation(ctx context.Context, cs kubernetes.Interface, webhookName string) installation {
	mwcs, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, m := range mwcs.Items {
			for _, w := range m.Webhooks {
				if w.Name == webhookName && w.ClientConfig.Service != nil {
					return installation{Namespace: w.ClientConfig.Service.Namespace, ConfigMap: m.Name, From: "MutatingWebhookConfiguration " + m.Name}
				}
			}
		}
	}
	b, err := cs.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Get(ctx, admissionpolicy.MutatingName, metav1.GetOptions{})
	if err == nil && b.Spec.ParamRef != nil && b.Spec.ParamRef.Namespace != "" {
		return installation{Namespace: b.Spec.ParamRef.Namespace, From: "MutatingAdmissionPolicyBinding " + b.Name}
	}
	return defaultInstallation
}

// say writes on w where podgrace was found, when the cluster did not say.
func (in installation) say(w io.Writer, cmd string) {
	if in.From == defaultInstallation.From {
		_, _ = fmt.Fprintf(w, "podgrace %s: no podgrace webhook or policy binding found in the cluster; assuming namespace %s\n", cmd, in.Namespace)
	}
}
