package integration

import (
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/internal/imagetest"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// baseConfig is the cluster config of the instances that do not test image
// inspection: their pods name images on registries that do not exist, and
// the lookups would only add warnings. TestImageInheritedShellForm runs an
// instance with inspection on against a real registry.
func baseConfig() policy.Config {
	cfg := policy.Default()
	cfg.ImageInspection.Enabled = false
	return cfg
}

// serveRegistries serves an instance whose image inspection may reach regs,
// in-process registries on loopback, which a deployed podgrace refuses.
func serveRegistries(t *testing.T, name string, cfg *policy.Config, regs ...*imagetest.Registry) {
	t.Helper()
	o := webhook.Options{Config: cfg, CertDir: certDir}
	for _, r := range regs {
		o.TestLoopbackRegistries = append(o.TestLoopbackRegistries, r.Host)
	}
	serveWith(t, name, o)
}

// TestImageInheritedShellForm is the case the original write-up is about: a
// Dockerfile `CMD ruby server.rb` (shell form) and a pod with no command.
// podgrace reads the image config from a real OCI registry, and the API
// server stores the pod with an exec-form command and a digest-pinned image.
// Many concurrent admissions of the same image fetch its config once.
func TestImageInheritedShellForm(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	digest := reg.Push(t, "shop/ruby", "2.4", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "ruby server.rb"}})
	pinned := reg.Ref("shop/ruby@" + digest)
	execForm := reg.Push(t, "shop/exec", "1", imagetest.Image{Entrypoint: []string{"/app"}, Cmd: []string{"serve"}})
	reg.Reset()

	cfg := policy.Default() // image inspection on, anonymous, pinDigest
	serveRegistries(t, "images", &cfg, reg)
	ns := namespace(t, forInstance("images"), nil)
	if err := waitForMutation(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	cs, warned := client(t)

	withImage := func(name, image string) *corev1.Pod {
		p := pod(name, 30, corev1.Container{Name: "app", Image: image})
		return p
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := cs.CoreV1().Pods(ns).Create(t.Context(), withImage("ruby-"+string(rune('a'+i)), reg.Ref("shop/ruby:2.4")), metav1.CreateOptions{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	stored, err := cs.CoreV1().Pods(ns).Get(t.Context(), "ruby-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := stored.Spec.Containers[0]
	if want := []string{"ruby", "server.rb"}; !slices.Equal(c.Command, want) || c.Args != nil {
		t.Errorf("command %q args %q, want %q from the image's shell-form CMD", c.Command, c.Args, want)
	}
	if c.Image != pinned {
		t.Errorf("image %q, want it pinned to the inspected digest %q", c.Image, pinned)
	}
	st := status(t, stored)
	if r := st.Containers[0]; r.ExecForm != "drop-shell" || r.Image != pinned {
		t.Errorf("status %+v", r)
	}
	// 20 admissions of one image: one manifest and one config blob fetch.
	configGets := reg.Count(func(r imagetest.Request) bool { return r.Method == "GET" && strings.Contains(r.Path, "/blobs/") })
	if configGets != 1 {
		t.Errorf("%d config blob fetches for %d admissions of one image, want 1:\n%v", configGets, n, reg.Requests())
	}

	// An exec-form image: nothing to rewrite, the image is not pinned.
	stored, err = cs.CoreV1().Pods(ns).Create(t.Context(), withImage("exec", reg.Ref("shop/exec:1")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := stored.Spec.Containers[0]; c.Command != nil || c.Image != reg.Ref("shop/exec:1") {
		t.Errorf("exec-form image touched: %+v (digest %s)", c, execForm)
	}

	// The registry down: the pod is admitted untouched apart from the sleep, with a warning.
	warned.Take()
	reg.Close()
	stored, err = cs.CoreV1().Pods(ns).Create(t.Context(), withImage("down", reg.Ref("shop/other:1")), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a registry outage blocked the pod: %v", err)
	}
	if c := stored.Spec.Containers[0]; c.Command != nil || c.Image != reg.Ref("shop/other:1") || sleepOf(&c) != 15 {
		t.Errorf("registry down: container %+v", c)
	}
	if st := status(t, stored); st.Containers[0].ExecFormSkipped != inject.SkipImageLookup {
		t.Errorf("status %+v, want %s", st.Containers[0], inject.SkipImageLookup)
	}
	if ws := warned.Take(); len(ws) != 1 || !strings.Contains(ws[0], "unreadable") {
		t.Errorf("warnings %q, want one about the unreadable image config", ws)
	}
}

// TestImagePullSecrets: with imageInspection.pullSecrets a private image's
// config is read with the pod's ServiceAccount's imagePullSecrets, which
// podgrace reads from the real API server; without them it is not.
func TestImagePullSecrets(t *testing.T) {
	t.Parallel()
	reg := imagetest.NewRegistry(t)
	digest := reg.Push(t, "private/app", "1", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "cd /srv && ./app"}})
	reg.RequireAuth("robot", "s3cret")

	cfg := policy.Default()
	cfg.ImageInspection.PullSecrets = true
	serveRegistries(t, "pullsecrets", &cfg, reg)
	ns := namespace(t, forInstance("pullsecrets"), nil)
	if err := waitForMutation(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	cs, warned := client(t)
	secret := reg.PullSecret("registry-creds", "robot", "s3cret")
	if _, err := cs.CoreV1().Secrets(ns).Create(t.Context(), &secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-creds"}}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	withSecret := pod("with-secret", 30, corev1.Container{Name: "app", Image: reg.Ref("private/app:1")})
	withSecret.Spec.ServiceAccountName = "builder"
	stored, err := cs.CoreV1().Pods(ns).Create(t.Context(), withSecret, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := stored.Spec.Containers[0]; !slices.Equal(c.Command, []string{"/bin/sh", "-c", "cd /srv && exec ./app"}) || c.Image != reg.Ref("private/app@"+digest) {
		t.Errorf("with the ServiceAccount's pull secret: command %q image %q", c.Command, c.Image)
	}

	// The default ServiceAccount has no pull secret: anonymous, refused, left alone.
	warned.Take()
	stored, err = cs.CoreV1().Pods(ns).Create(t.Context(), pod("without", 30, corev1.Container{Name: "app", Image: reg.Ref("private/app:1")}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := stored.Spec.Containers[0]; c.Command != nil {
		t.Errorf("without a pull secret the private image was read: %q", c.Command)
	}
	if ws := warned.Take(); len(ws) != 1 || !strings.Contains(ws[0], "unreadable") {
		t.Errorf("warnings %q", ws)
	}
}
