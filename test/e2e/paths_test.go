//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// The traffic paths (issue 13): a rolling update under load on each path
// production traffic takes besides a new connection through kube-proxy,
// counted without and with podgrace. The arms run in parallel, each in its
// own namespace with its own Deployment, Service and load; each rollout is
// short (2 replicas, grace period 20 s, so podgrace's auto sleep is 10 s).
const (
	pathReplicas = 2
	pathGrace    = 20
	pathSleep    = 10 // podgrace's auto sleep for T=20: clamp(0.5*20, 5s, 60s)
	pathWorkers  = 2
	pathInterval = 15 * time.Millisecond
	// A keep-alive client opens a connection only when its own was closed,
	// so there are more of them: 16 clients, each with one connection.
	keepAliveWorkers  = 16
	keepAliveInterval = 100 * time.Millisecond
	pathMinDuration   = 30 * time.Second
	pathMaxDuration   = 150 * time.Second
	pathMinRequests   = 500
	// ingressBatch is the ingress proxy's batching delay: a controller's
	// sync, longer than kube-proxy's (about 1 s), shorter than the sleep.
	ingressBatch = 3 * time.Second
)

// The names a mesh and a database proxy have in real pods: both are in
// podgrace's default sidecar list.
const (
	meshSidecar = "linkerd-proxy"
	dbSidecar   = "cloud-sql-proxy"
)

type pathKind int

const (
	pathIngress   pathKind = iota // client -> ingress proxy Service -> proxy (EndpointSlices) -> pods
	pathSidecars                  // client -> ClusterIP -> linkerd-proxy -> app -> cloud-sql-proxy -> db Service
	pathKeepAlive                 // keep-alive client -> ClusterIP -> graceful app
)

type pathArm struct {
	name     string
	kind     pathKind
	podgrace bool // the namespace is opted in
	// sidecarSleepOff turns the sidecars' sleeps off with their per-container
	// annotations: podgrace as it behaved before sidecars outlived the app.
	sidecarSleepOff bool
	wantFailures    bool // the race must show (an arm without the fix)
	// namespace is an existing namespace to run in ("" = a new one);
	// batch the ingress proxy's batching delay (0 = ingressBatch).
	namespace string
	batch     time.Duration
}

func (a pathArm) mode() string {
	switch {
	case !a.podgrace:
		return "without podgrace"
	case a.sidecarSleepOff:
		return "podgrace, sidecar sleeps off"
	}
	return "with podgrace"
}

func TestTrafficPaths(t *testing.T) {
	t.Parallel()
	arms := []pathArm{
		{name: "ingress/without-podgrace", kind: pathIngress, wantFailures: true},
		{name: "ingress/with-podgrace", kind: pathIngress, podgrace: true},
		{name: "sidecars/without-podgrace", kind: pathSidecars, wantFailures: true},
		{name: "sidecars/podgrace-sidecar-sleeps-off", kind: pathSidecars, podgrace: true, sidecarSleepOff: true, wantFailures: true},
		{name: "sidecars/with-podgrace", kind: pathSidecars, podgrace: true},
		{name: "keepalive/without-podgrace", kind: pathKeepAlive, wantFailures: true},
		{name: "keepalive/with-podgrace", kind: pathKeepAlive, podgrace: true},
	}
	var mu sync.Mutex
	results := map[string]loadResult{}
	t.Run("group", func(t *testing.T) {
		for _, a := range arms {
			t.Run(a.name, func(t *testing.T) {
				if a.podgrace {
					requirePodgrace(t)
				}
				t.Parallel()
				res, ok := pathRollout(t, a)
				if !ok {
					return
				}
				mu.Lock()
				results[a.name] = res
				mu.Unlock()
				switch {
				case a.wantFailures && res.failed() == 0:
					t.Errorf("%s: no request failed during the rollout: the race was not reproduced on this path (%s)", a.mode(), res)
				case !a.wantFailures && res.failed() != 0:
					t.Errorf("%s: %d requests failed during the rollout (%s)", a.mode(), res.failed(), res)
				}
			})
		}
	})
	for _, a := range arms {
		if r, ok := results[a.name]; ok {
			t.Logf("RESULT traffic path %-38s failed %4d of %5d (refused %d, reset %d, timeout %d, 5xx %d, other %d)",
				a.name, r.failed(), r.Requests, r.Failures[failRefused], r.Failures[failReset], r.Failures[failTimeout], r.Failures[fail5xx], r.Failures[failOther])
		}
	}
}

// pathRollout sets the arm's objects up, rolls the app under load and
// returns what the load saw (ok false when the test already failed).
func pathRollout(t *testing.T, a pathArm) (loadResult, bool) {
	ctx := context.Background()
	ns := a.namespace
	if ns == "" {
		ns = newNamespace(t, "e2e-path", a.podgrace)
	}
	var old oldPods
	t.Cleanup(func() { diagnose(t, ns, &old) }) // before the namespace goes

	var dbAddr string
	if a.kind == pathSidecars {
		dbAddr = createDB(t, ns)
	}
	webPort := int32(8080)
	if a.kind == pathSidecars {
		webPort = 4143 // the mesh proxy receives the pod's inbound traffic
	}
	if _, err := kube.CoreV1().Services(ns).Create(ctx, simpleService("web", "web", 80, webPort), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, pathDeployment(a, dbAddr), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svcName := "web"
	if a.kind == pathIngress {
		batch := a.batch
		if batch == 0 {
			batch = ingressBatch
		}
		createIngress(t, ns, ns, "web", batch)
		svcName = "ingress"
	}
	if err := waitRollout(ctx, ns, "web"); err != nil {
		t.Fatal(err)
	}
	if a.kind == pathIngress {
		if err := waitRollout(ctx, ns, "ingress"); err != nil {
			t.Fatal(err)
		}
	}
	appSleep := checkPathInjection(t, ns, a)
	svc, err := kube.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	if err := waitServing(ctx, target, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := old.follow(ctx, ns); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan loadResult, 1)
	loadErr := make(chan error, 1)
	go func() {
		cfg := loadConfig{
			URL: target, Workers: pathWorkers, Interval: pathInterval, Timeout: loadTimeout,
			MaxRequests: loadMaxRequests, MaxDuration: pathMaxDuration,
		}
		if a.kind == pathKeepAlive {
			cfg.Workers, cfg.Interval, cfg.KeepAlive = keepAliveWorkers, keepAliveInterval, true
		}
		res, err := runLoad(ctx, cfg, stop)
		loadErr <- err
		done <- res
	}()
	loadStart := time.Now()
	time.Sleep(loadLeadIn)
	triggered := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"VERSION","value":"v2-%d"}]}]}}}}`, triggered.Unix())
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		close(stop)
		t.Fatal(err)
	}
	rolloutErr := waitRollout(ctx, ns, "web")
	rolledOut := time.Since(triggered)
	goneErr := old.waitGone(ctx, ns)
	allGone := time.Since(triggered)
	time.Sleep(loadTail)
	if rest := pathMinDuration - time.Since(loadStart); rest > 0 {
		time.Sleep(rest)
	}
	close(stop)
	res := <-done
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: rollout done %.1fs after the trigger, last old pod gone after %.1fs", a.mode(), rolledOut.Seconds(), allGone.Seconds())
	t.Logf("%s: %s (load average %s)", a.mode(), res, loadAvg())
	for _, s := range res.Samples {
		t.Logf("  %s", s)
	}
	if rolloutErr != nil {
		t.Fatal(rolloutErr)
	}
	if goneErr != nil {
		t.Fatal(goneErr)
	}
	if res.Duration >= pathMaxDuration-time.Second || res.Requests >= loadMaxRequests {
		t.Errorf("the load hit its bound (%s) before the rollout ended: the count does not cover the whole rollout", res)
	}
	if res.Requests < pathMinRequests {
		t.Errorf("only %d requests were sent: too little load to measure anything", res.Requests)
	}
	if len(res.Versions) < 2 {
		t.Errorf("responses came from versions %v only: the rollout was not observed on this path", res.Versions)
	}
	old.report(t)
	if a.kind == pathSidecars && a.podgrace && !a.sidecarSleepOff {
		old.checkSidecarsOutliveApp(t, appSleep)
	}
	return res, !t.Failed()
}

// pathDeployment is the app of an arm: the naive server behind the ingress
// proxy, the graceful one for keep-alive clients, and the graceful one
// with its mesh and database sidecars.
func pathDeployment(a pathArm, dbAddr string) *appsv1.Deployment {
	d := webDeployment()
	d.Spec.Replicas = ptr(int32(pathReplicas))
	spec := &d.Spec.Template.Spec
	spec.TerminationGracePeriodSeconds = ptr(int64(pathGrace))
	app := &spec.Containers[0]
	app.Name = "app"
	app.Image = images.TrafficRef
	app.Command = []string{images.TrafficApp, "--port", "8080"}
	switch a.kind {
	case pathKeepAlive:
		app.Command = append(app.Command, "--graceful")
	case pathSidecars:
		app.Command = append(app.Command, "--graceful", "--db", "127.0.0.1:5432")
		spec.Containers = append(spec.Containers,
			corev1.Container{
				Name: meshSidecar, Image: images.TrafficRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{images.TrafficMeshProxy, "--listen", ":4143", "--app", "127.0.0.1:8080", "--admin", ":4191"},
				Ports:   []corev1.ContainerPort{{ContainerPort: 4143}, {ContainerPort: 4191}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(4191)}},
					PeriodSeconds: 1,
				},
			},
			corev1.Container{
				Name: dbSidecar, Image: images.TrafficRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{images.TrafficTCPProxy, "--listen", "127.0.0.1:5432", "--upstream", dbAddr},
			})
		if a.sidecarSleepOff {
			d.Spec.Template.Annotations = map[string]string{
				meshSidecar + ".podgrace.dev/prestop-sleep": "off",
				dbSidecar + ".podgrace.dev/prestop-sleep":   "off",
			}
		}
	}
	return d
}

func simpleService(name, app string, port, targetPort int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(targetPort)}},
		},
	}
}

// helperDeployment is a one-replica Deployment of the traffic image that
// podgrace never mutates (the pod label opts it out): the proxies and the
// database stay the same in every arm; only the app differs.
func helperDeployment(name string, c corev1.Container) *appsv1.Deployment {
	lbl := map[string]string{"app": name}
	c.Name, c.Image, c.ImagePullPolicy = name, images.TrafficRef, corev1.PullIfNotPresent
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, injectLabel: "disabled"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(5)),
					EnableServiceLinks:            ptr(false),
					AutomountServiceAccountToken:  ptr(false),
					Containers:                    []corev1.Container{c},
				},
			},
		},
	}
}

// createDB starts the database the cloud-sql-proxy sidecars forward to and
// returns its ClusterIP:port (pods here resolve no names).
func createDB(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	d := helperDeployment("db", corev1.Container{
		Command: []string{images.TrafficTCPProxy, "--serve", ":5432"},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5432)}},
			PeriodSeconds: 1,
		},
	})
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services(ns).Create(ctx, simpleService("db", "db", 5432, 5432), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, "5432")
}

// createIngress starts, in namespace ns, the ingress proxy in front of
// Service service of namespace target with a batching delay, the RBAC it
// needs to watch EndpointSlices there (a Role in ns, or a ClusterRole when
// target is another namespace, removed when the test ends), and its own
// Service "ingress".
func createIngress(t *testing.T, ns, target, service string, batch time.Duration) {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ingress"}}
	rules := []rbacv1.PolicyRule{{
		APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"},
	}}
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ingress", Namespace: ns}}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if target == ns {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ingress"}, Rules: rules}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "ingress"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "ingress"},
			Subjects:   subjects,
		}
		if _, err := kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	} else {
		name := "e2e-ingress-" + ns
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects:   subjects,
		}
		if _, err := kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kube.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	d := helperDeployment("ingress", corev1.Container{
		Command: []string{images.TrafficIngress, "--service", service, "--namespace", target,
			"--listen", ":8080", "--health", ":8081", "--batch", batch.String()},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8081)}},
			PeriodSeconds: 1,
		},
	})
	d.Spec.Template.Spec.ServiceAccountName = "ingress"
	d.Spec.Template.Spec.AutomountServiceAccountToken = ptr(true)
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services(ns).Create(ctx, simpleService("ingress", "ingress", 80, 8080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkPathInjection verifies the app pods are what the arm claims and
// returns the app container's preStop sleep (0 without one).
func checkPathInjection(t *testing.T, ns string, a pathArm) time.Duration {
	t.Helper()
	pods, err := kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var appSleep time.Duration
	for _, p := range pods.Items {
		_, hasStatus := p.Annotations[statusAnnotation]
		hooks := map[string]string{}
		for _, c := range p.Spec.Containers {
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				b, _ := json.Marshal(c.Lifecycle.PreStop)
				hooks[c.Name] = string(b)
			}
		}
		if !a.podgrace {
			if hasStatus || len(hooks) > 0 {
				t.Fatalf("pod %s in namespace %s without podgrace was mutated (status %v, preStop hooks %v)", p.Name, ns, hasStatus, hooks)
			}
			continue
		}
		app := p.Spec.Containers[0]
		s, ok := sleepOfHook(app)
		if !hasStatus || !ok {
			t.Fatalf("pod %s in opted-in namespace %s: %s annotation %v, app preStop %q: podgrace did not give the app a sleep", p.Name, ns, statusAnnotation, hasStatus, hooks[app.Name])
		}
		appSleep = s
		if a.kind == pathSidecars {
			for _, name := range []string{meshSidecar, dbSidecar} {
				c := containerNamed(p.Spec.Containers, name)
				cs, has := sleepOfHook(c)
				switch {
				case a.sidecarSleepOff && has:
					t.Fatalf("pod %s: sidecar %s has a preStop sleep %s although its annotation turns it off", p.Name, name, hooks[name])
				case !a.sidecarSleepOff && (!has || cs <= s):
					t.Fatalf("pod %s: sidecar %s preStop %q does not outlast the app's %s sleep", p.Name, name, hooks[name], s)
				}
			}
		}
		t.Logf("pod %s: preStop hooks %v, terminationGracePeriodSeconds %d, %s=%s", p.Name, hooks, *p.Spec.TerminationGracePeriodSeconds, statusAnnotation, p.Annotations[statusAnnotation])
	}
	return appSleep
}

func containerNamed(cs []corev1.Container, name string) corev1.Container {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return corev1.Container{}
}

// sleepOfHook reads a preStop sleep: the native sleep action, or the exec
// fallback ["sleep", "N"].
func sleepOfHook(c corev1.Container) (time.Duration, bool) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0, false
	}
	h := c.Lifecycle.PreStop
	if h.Sleep != nil {
		return time.Duration(h.Sleep.Seconds) * time.Second, true
	}
	if h.Exec != nil && len(h.Exec.Command) == 2 && strings.HasSuffix(h.Exec.Command[0], "sleep") {
		if n, err := strconv.Atoi(h.Exec.Command[1]); err == nil {
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// oldPods follows the container logs (with the kubelet's timestamps) of the
// app pods that exist before the rollout, and records when each was deleted.
type oldPods struct {
	mu   sync.Mutex
	pods []*oldPod
}

type oldPod struct {
	name      string
	deletedAt time.Time // DeletionTimestamp - grace: at or before the delete (the API keeps whole seconds)
	logs      map[string]*logFollower
	order     []string
}

func (o *oldPods) follow(ctx context.Context, ns string) error {
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range pods.Items {
		op := &oldPod{name: p.Name, logs: map[string]*logFollower{}}
		for _, c := range p.Spec.Containers {
			l, err := followLogsOpts(ctx, ns, p.Name, &corev1.PodLogOptions{Container: c.Name, Follow: true, Timestamps: true})
			if err != nil {
				return err
			}
			op.logs[c.Name] = l
			op.order = append(op.order, c.Name)
		}
		o.pods = append(o.pods, op)
	}
	return nil
}

// waitGone waits until every old pod is gone and exactly pathReplicas app
// pods are left, none terminating, noting when each old pod was deleted.
func (o *oldPods) waitGone(ctx context.Context, ns string) error {
	left := ""
	err := poll(ctx, rolloutTimeout, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return retry(err)
		}
		byName := map[string]corev1.Pod{}
		terminating := 0
		for _, p := range pods.Items {
			byName[p.Name] = p
			if p.DeletionTimestamp != nil {
				terminating++
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		oldLeft := 0
		for _, op := range o.pods {
			p, ok := byName[op.name]
			if !ok {
				continue
			}
			oldLeft++
			if op.deletedAt.IsZero() && p.DeletionTimestamp != nil {
				grace := int64(0)
				if p.DeletionGracePeriodSeconds != nil {
					grace = *p.DeletionGracePeriodSeconds
				}
				op.deletedAt = p.DeletionTimestamp.Add(-time.Duration(grace) * time.Second)
			}
		}
		left = fmt.Sprintf("%d old pods left, %d pods, %d terminating", oldLeft, len(pods.Items), terminating)
		return oldLeft == 0 && terminating == 0 && len(pods.Items) == pathReplicas, nil
	})
	if err != nil {
		return fmt.Errorf("old app pods in %s not gone (%s): %w", ns, left, err)
	}
	return nil
}

// containerTimeline is what a container's log says about its end.
type containerTimeline struct {
	sigterm time.Time // the line saying SIGTERM arrived
	exit    time.Time // the line saying it exits, else the end of the log stream
}

func (l *logFollower) timeline() containerTimeline {
	var tl containerTimeline
	sc := bufio.NewScanner(strings.NewReader(l.text()))
	for sc.Scan() {
		ts, msg, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		if tl.sigterm.IsZero() && strings.Contains(msg, "got SIGTERM") {
			tl.sigterm = at
		}
		if strings.Contains(msg, "exiting") {
			tl.exit = at
		}
	}
	if tl.exit.IsZero() {
		select {
		case <-l.done:
			tl.exit = l.endedAt
		default:
		}
	}
	return tl
}

// report logs, for each old pod, when each container got SIGTERM and
// exited, relative to the delete.
func (o *oldPods) report(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, op := range o.pods {
		var parts []string
		for _, name := range op.order {
			tl := op.logs[name].timeline()
			parts = append(parts, fmt.Sprintf("%s SIGTERM %s exit %s", name, sinceOrNever(tl.sigterm, op.deletedAt), sinceOrNever(tl.exit, op.deletedAt)))
		}
		t.Logf("old pod %s after its delete: %s", op.name, strings.Join(parts, "; "))
	}
}

func sinceOrNever(at, from time.Time) string {
	switch {
	case at.IsZero():
		return "never"
	case from.IsZero(): // the pod went before a poll saw it terminating
		return at.Format("15:04:05.0")
	}
	return fmt.Sprintf("%+.1fs", at.Sub(from).Seconds())
}

// checkSidecarsOutliveApp asserts the order podgrace exists for: the app
// gets SIGTERM only after its preStop sleep, and each sidecar gets SIGTERM
// only after the app has exited.
func (o *oldPods) checkSidecarsOutliveApp(t *testing.T, appSleep time.Duration) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pods) != pathReplicas {
		t.Errorf("followed %d old pods, want %d", len(o.pods), pathReplicas)
	}
	for _, op := range o.pods {
		app := op.logs["app"].timeline()
		switch {
		case op.deletedAt.IsZero():
			t.Errorf("old pod %s: its deletion was not observed", op.name)
			continue
		case app.sigterm.IsZero() || app.exit.IsZero():
			t.Errorf("old pod %s: the app's log has no SIGTERM or no exit", op.name)
			continue
		// 1 s of slack: deletedAt comes from whole-second API timestamps.
		// Without the sleep SIGTERM would come within a second of the delete.
		case app.sigterm.Before(op.deletedAt.Add(appSleep - time.Second)):
			t.Errorf("old pod %s: the app got SIGTERM %.1fs after the delete, before its %s preStop sleep ended", op.name, app.sigterm.Sub(op.deletedAt).Seconds(), appSleep)
		}
		for _, name := range []string{meshSidecar, dbSidecar} {
			sc := op.logs[name].timeline()
			if sc.sigterm.IsZero() || !sc.sigterm.After(app.exit) {
				t.Errorf("old pod %s: sidecar %s got SIGTERM at %s, the app exited at %s after the delete: the sidecar did not outlive the app",
					op.name, name, sinceOrNever(sc.sigterm, op.deletedAt), sinceOrNever(app.exit, op.deletedAt))
			}
		}
	}
}

// diagnose prints, for a failed test, the namespace's events, the tails of
// the current pods' container logs and the old pods' logs as followed.
func diagnose(t *testing.T, ns string, old *oldPods) {
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "DIAGNOSIS of namespace %s (load average %s)\n", ns, loadAvg())
	if evs, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		sort.Slice(evs.Items, func(i, j int) bool { return eventTime(evs.Items[i]).Before(eventTime(evs.Items[j])) })
		fmt.Fprintf(&b, "-- events (%d)\n", len(evs.Items))
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "%s %-7s %s/%s %s: %s\n", eventTime(e).Format("15:04:05"), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	} else {
		fmt.Fprintf(&b, "-- events: %v\n", err)
	}
	if pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			for _, c := range p.Spec.Containers {
				raw, err := kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: ptr(int64(40)), Timestamps: true}).DoRaw(ctx)
				if err != nil {
					raw = []byte(err.Error())
				}
				fmt.Fprintf(&b, "-- pod %s (phase %s) container %s, last log lines:\n%s", p.Name, p.Status.Phase, c.Name, raw)
			}
		}
	}
	if old != nil {
		old.mu.Lock()
		for _, op := range old.pods {
			for _, name := range op.order {
				fmt.Fprintf(&b, "-- old pod %s container %s (deleted %s), log:\n%s", op.name, name, op.deletedAt.Format("15:04:05"), tail(op.logs[name].text(), 40))
			}
		}
		old.mu.Unlock()
	}
	t.Log(b.String())
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
