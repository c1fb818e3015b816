package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/imagetest"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// issueClient issues a client certificate (ExtKeyUsageClientAuth) signed
// by c, as PEM.
func (c *certs) issueClient(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TestAPIServerClientCert is webhook.clientAuth end to end
// (docs/operate/security.md): podgrace requires a client certificate signed
// by its client CA (--client-ca-file, as the chart passes it), and a real
// kube-apiserver presents one, configured as a self-managed control plane
// configures it: --admission-control-config-file naming an
// AdmissionConfiguration whose WebhookAdmissionConfiguration points at a
// kubeconfig with the client certificate for the webhook's host. Pods are
// mutated, with pullSecrets on (what client authentication exists for); a
// direct call without the certificate is refused at the TLS handshake.
func TestAPIServerClientCert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clientCA, err := newCerts()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "client-ca.crt")
	certPEM, keyPEM := clientCA.issueClient(t, "kube-apiserver-webhook-client")
	ports, err := freeport.Take(1)
	if err != nil {
		t.Fatal(err)
	}
	host := "127.0.0.1:" + strconv.Itoa(ports[0])

	// The API server's webhook client kubeconfig: the user is named after
	// the webhook's host and port (for a Service, its DNS name and port).
	kc := clientcmdapi.NewConfig()
	kc.AuthInfos[host] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	kcFile := filepath.Join(dir, "webhook-client.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcFile); err != nil {
		t.Fatal(err)
	}
	admissionFile := filepath.Join(dir, "admission.yaml")
	for name, b := range map[string][]byte{
		caFile: clientCA.caPEM,
		admissionFile: []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ` + kcFile + "\n"),
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	env := &envtest.Environment{ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	if err := testkube.Configure(env); err != nil {
		t.Fatal(err)
	}
	env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", admissionFile)
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting a kube-apiserver with a webhook client certificate: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := t.Context()

	reg := imagetest.NewRegistry(t)
	digest := reg.Push(t, "private/app", "1", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "cd /srv && ./app"}})
	reg.RequireAuth("robot", "s3cret")
	pcfg := policy.Default()
	pcfg.ImageInspection.PullSecrets = true
	in, err := startInstanceWith(ctx, "clientcert", webhook.Options{
		Config: &pcfg, CertDir: certDir, ClientCAFile: caFile, RESTConfig: cfg, Port: ports[0],
		TestLoopbackRegistries: []string{reg.Host},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.stop() })
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx,
		mustWebhook(chart.WebhookOptions{URL: in.url, CABundle: tlsAssets.caPEM}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "pg-", Labels: map[string]string{policy.LabelInject: policy.InjectEnabled},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret := reg.PullSecret("registry-creds", "robot", "s3cret")
	if _, err := cs.CoreV1().Secrets(ns.Name).Create(ctx, &secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Pods are mutated: the API server's calls carry the certificate. The
	// private image's config is read with the pod's pull secret.
	private := pod("private", 30, corev1.Container{Name: "app", Image: reg.Ref("private/app:1")})
	private.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry-creds"}}
	var stored *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns.Name).Create(ctx, private, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		stored = p
		_, ok := p.Annotations[policy.AnnotationStatus]
		return ok, nil
	})
	if err != nil {
		t.Fatalf("no pod mutated through the API server with its client certificate: %v (last: %v)", err, stored)
	}
	stored, err = cs.CoreV1().Pods(ns.Name).Create(ctx, private, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := stored.Spec.Containers[0]
	if !slices.Equal(c.Command, []string{"/bin/sh", "-c", "cd /srv && exec ./app"}) || c.Image != reg.Ref("private/app@"+digest) {
		t.Errorf("with pullSecrets and the pod's pull secret: command %q image %q", c.Command, c.Image)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Errorf("no preStop hook: %+v", c.Lifecycle)
	}

	// A direct call without a client certificate is refused at the TLS
	// handshake: no review is read. The same call with the certificate is
	// answered, so the certificate is what decides.
	review := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`)
	call := func(withCert bool) (*http.Response, error) {
		conf := tlsAssets.clientTLS()
		if withCert {
			kp, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			conf.Certificates = []tls.Certificate{kp}
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
		defer client.CloseIdleConnections()
		return client.Post(in.url, "application/json", bytes.NewReader(review))
	}
	if resp, err := call(false); err == nil {
		_ = resp.Body.Close()
		t.Errorf("a call without a client certificate was answered %d", resp.StatusCode)
	} else {
		t.Logf("without a client certificate: %v", err)
	}
	resp, err := call(true)
	if err != nil {
		t.Fatalf("a call with the client certificate: %v", err)
	}
	_ = resp.Body.Close()
}
