package cli

import (
	"context"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/registration"
)

// TestFindInstallation: the webhook's service names podgrace's namespace
// (and the configuration its ConfigMap), else the policy binding's
// parameters, else the README's namespace. (Plumbing on a fake clientset;
// TestAuditFindsInstallation in test/integration runs it on a real API server.)
func TestFindInstallation(t *testing.T) {
	t.Parallel()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pg"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			{Name: "other.example.com", ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "wrong"}}},
			{Name: registration.WebhookName, ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "platform", Name: "pg-webhook"}}},
		},
	}
	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: admissionpolicy.MutatingName},
		Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{ParamRef: &admissionregistrationv1.ParamRef{Name: "p", Namespace: "policies"}},
	}
	for name, c := range map[string]struct {
		objs []runtime.Object
		want installation
	}{
		"webhook": {[]runtime.Object{mwc, binding}, installation{Namespace: "platform", ConfigMap: "pg", From: "MutatingWebhookConfiguration pg"}},
		"policy":  {[]runtime.Object{binding}, installation{Namespace: "policies", From: "MutatingAdmissionPolicyBinding podgrace"}},
		"none":    {nil, defaultInstallation},
	} {
		if got := findInstallation(context.Background(), fake.NewClientset(c.objs...), registration.WebhookName); got != c.want {
			t.Errorf("%s: %+v, want %+v", name, got, c.want)
		}
	}
}
