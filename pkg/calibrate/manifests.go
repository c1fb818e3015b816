package calibrate

import (
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/policy"
)

// Names and labels of what calibrate creates. Everything carries
// ManagedByLabel=ManagedBy, so that a leftover of an interrupted run is
// recognized (and removed by the next run).
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "podgrace-calibrate"
	NameLabel      = "app.kubernetes.io/name"
	ProbeName      = "podgrace-probe"
	ClientName     = "podgrace-probe-client"
	// DefaultNamespace is --namespace's default.
	DefaultNamespace = "podgrace-calibrate"
	// collectSlack is what a probe's grace period adds to the window: the
	// time calibrate has to read the final records after the window.
	collectSlack = 20 * time.Second
)

// GracePeriod is the probe pods' terminationGracePeriodSeconds for a window.
func GracePeriod(window time.Duration) int64 {
	return int64((window + collectSlack + time.Second - 1) / time.Second)
}

func labels(name string) map[string]string {
	return map[string]string{ManagedByLabel: ManagedBy, NameLabel: name}
}

// Manifests are the objects calibrate creates, in creation order.
type Manifests struct {
	Namespace  *corev1.Namespace
	Service    *corev1.Service
	Deployment *appsv1.Deployment
	// Client is created once the Service has its ClusterIP (its URL
	// defaults to it).
	Client *corev1.Pod
}

// Objects lists them for printing.
func (m *Manifests) Objects() []runtime.Object {
	return []runtime.Object{m.Namespace, m.Service, m.Deployment, m.Client}
}

// YAML prints the manifests as a multi-document stream.
func (m *Manifests) YAML() ([]byte, error) {
	var out []byte
	for i, o := range m.Objects() {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	return out, nil
}

// restricted is a container security context that passes the Restricted
// pod security level.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false),
		RunAsNonRoot:             new(true),
		ReadOnlyRootFilesystem:   new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func small() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
}

// BuildManifests returns the objects for o; url is the client's target
// ("" until the Service's ClusterIP is known).
func BuildManifests(o *Options, url string) *Manifests {
	ns := o.Namespace
	adminProbe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(AdminPort)}},
		PeriodSeconds: 1,
	}
	podEnv := []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
	podLabels := func(name string) map[string]string {
		l := labels(name)
		// podgrace never adds a sleep to them, in any mode: the probe
		// measures the path, not podgrace.
		l[policy.LabelInject] = policy.InjectDisabled
		return l
	}
	m := &Manifests{
		Namespace: &corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
				ManagedByLabel:                       ManagedBy,
				"pod-security.kubernetes.io/enforce": "restricted",
			}},
		},
		Service: &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: ProbeName, Namespace: ns, Labels: labels(ProbeName)},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeClusterIP,
				Selector: map[string]string{ManagedByLabel: ManagedBy, NameLabel: ProbeName},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(ProbePort)}},
			},
		},
		Deployment: &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: ProbeName, Namespace: ns, Labels: labels(ProbeName)},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32(o.Replicas)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{ManagedByLabel: ManagedBy, NameLabel: ProbeName}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: podLabels(ProbeName)},
					Spec: corev1.PodSpec{
						// No preStop hook: the probe's termination starts
						// when SIGTERM arrives, the moment a preStop hook
						// would start (docs/operate/sizing.md).
						TerminationGracePeriodSeconds: new(GracePeriod(o.Window)),
						AutomountServiceAccountToken:  new(false),
						EnableServiceLinks:            new(false),
						Containers: []corev1.Container{{
							Name: "probe", Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
							Args: []string{"probe", "--window", o.Window.String(),
								"--listen", ":" + strconv.Itoa(ProbePort), "--admin", ":" + strconv.Itoa(AdminPort)},
							Env: podEnv,
							Ports: []corev1.ContainerPort{
								{Name: "http", ContainerPort: ProbePort}, {Name: "admin", ContainerPort: AdminPort},
							},
							ReadinessProbe:  adminProbe,
							SecurityContext: restricted(),
							Resources:       small(),
						}},
					},
				},
			},
		},
		Client: &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: ClientName, Namespace: ns, Labels: podLabels(ClientName)},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64(1)),
				AutomountServiceAccountToken:  new(false),
				EnableServiceLinks:            new(false),
				Containers: []corev1.Container{{
					Name: "client", Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
					Args: []string{"probe-client", "--url", url, "--workers", strconv.Itoa(o.Workers),
						"--interval", o.Interval.String(), "--admin", ":" + strconv.Itoa(AdminPort)},
					Ports:           []corev1.ContainerPort{{Name: "admin", ContainerPort: AdminPort}},
					ReadinessProbe:  adminProbe,
					SecurityContext: restricted(),
					Resources:       small(),
				}},
			},
		},
	}
	if url == "" {
		m.Client.Spec.Containers[0].Args[2] = fmt.Sprintf("http://<ClusterIP of %s/%s>:80/", ns, ProbeName)
	}
	return m
}
