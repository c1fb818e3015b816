package webhook

import (
	"fmt"

	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// admissionPod is how the handler decodes request.object: a corev1.Pod minus
// the subtrees podgrace never reads, which the JSON scanner then skips instead
// of decoding. Those subtrees are most of a real pod's bytes and the costliest
// to decode (resource quantities, probes, managedFields, volumes), and
// decoding the pod is most of what a request costs. Every other field is
// decoded as usual, so a field the core starts to read is there; the
// skipped ones are listed here, and TestAdmissionPodKeepsWhatTheCoreReads
// fails if the mutation's result ever depends on one of them. The pod handed
// to the image lookup is the same partial pod: it reads the namespace,
// imagePullSecrets, serviceAccountName and nodeSelector, all kept.
type admissionPod struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        admissionMeta `json:"metadata"`
	Spec            admissionSpec `json:"spec"`
	Status          skipped       `json:"status"`
}

// admissionMeta keeps ownerReferences as they arrived: the Events of a pod go
// on its top-level controller (events.go), and only an admission that
// records an Event decodes them (admissionRequest.controller); most record
// none.
type admissionMeta struct {
	metav1.ObjectMeta
	ManagedFields   skipped  `json:"managedFields"`
	OwnerReferences keptJSON `json:"ownerReferences"`
}

type admissionSpec struct {
	corev1.PodSpec
	// Pointers: the decoder grows a slice by doubling it, copying the
	// elements each time, and a container is 432 bytes.
	Containers                []*admissionContainer `json:"containers"`
	InitContainers            []*admissionContainer `json:"initContainers"`
	EphemeralContainers       skipped               `json:"ephemeralContainers"`
	Volumes                   skipped               `json:"volumes"`
	Tolerations               skipped               `json:"tolerations"`
	SecurityContext           skipped               `json:"securityContext"`
	TopologySpreadConstraints skipped               `json:"topologySpreadConstraints"`
	Overhead                  skipped               `json:"overhead"`
	Resources                 skipped               `json:"resources"`
	ResourceClaims            skipped               `json:"resourceClaims"`
	ReadinessGates            skipped               `json:"readinessGates"`
	HostAliases               skipped               `json:"hostAliases"`
	DNSConfig                 skipped               `json:"dnsConfig"`
}

type admissionContainer struct {
	corev1.Container
	Resources       skipped `json:"resources"`
	ResizePolicy    skipped `json:"resizePolicy"`
	LivenessProbe   skipped `json:"livenessProbe"`
	ReadinessProbe  skipped `json:"readinessProbe"`
	StartupProbe    skipped `json:"startupProbe"`
	SecurityContext skipped `json:"securityContext"`
	VolumeMounts    skipped `json:"volumeMounts"`
	VolumeDevices   skipped `json:"volumeDevices"`
	Ports           skipped `json:"ports"`
	// Env is read for its names only (which $(VAR) the kubelet expands).
	Env []envName `json:"env"`
}

type envName struct {
	Name string `json:"name"`
}

// keptJSON is a JSON value kept as it arrived, decoded later if at all.
type keptJSON []byte

func (r *keptJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// UnmarshalJSONFrom keeps the value on decodeFast's engine.
func (r *keptJSON) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	*r = append((*r)[:0], v...)
	return nil
}

// skipped is a JSON value that is scanned past, never decoded.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// UnmarshalJSONFrom skips the value on decodeFast's engine, which would
// otherwise copy it out to hand it to UnmarshalJSON.
func (*skipped) UnmarshalJSONFrom(dec *jsontext.Decoder) error { return dec.SkipValue() }

// pod returns the corev1.Pod the core works on. A null container is an
// error: decoded, it is a zero container the core may patch, and a patch
// into null does not apply to the request's object (the API server would
// refuse such a pod anyway: a container needs a name).
func (p *admissionPod) pod() (*corev1.Pod, error) {
	out := &corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: p.Metadata.ObjectMeta, Spec: p.Spec.PodSpec}
	for _, l := range [...]struct {
		field string
		list  []*admissionContainer
	}{{"containers", p.Spec.Containers}, {"initContainers", p.Spec.InitContainers}} {
		for i, c := range l.list {
			if c == nil {
				return nil, fmt.Errorf("spec.%s[%d] is null", l.field, i)
			}
		}
	}
	out.Spec.Containers = containers(p.Spec.Containers)
	out.Spec.InitContainers = containers(p.Spec.InitContainers)
	return out, nil
}

func containers(in []*admissionContainer) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i := range in {
		out[i] = in[i].Container
		if in[i].Env != nil {
			env := make([]corev1.EnvVar, len(in[i].Env))
			for j, e := range in[i].Env {
				env[j].Name = e.Name
			}
			out[i].Env = env
		}
	}
	return out
}
