package webhook

import (
	"context"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podgrace/podgrace/pkg/inject"
)

// Event reasons podgrace records (docs/design.md §7).
const (
	// EventInvalidSetting: an invalid or unknown podgrace key was ignored.
	EventInvalidSetting = "PodgraceInvalidSetting"
	// EventNotApplied: a container was skipped, a sleep shortened or
	// dropped, a command left in shell form.
	EventNotApplied = "PodgraceNotApplied"
	// EventDenied: strict mode denied a pod.
	EventDenied = "PodgraceDenied"
	// EventQueueSize bounds the events waiting for their owner lookup;
	// more are dropped and counted (podgrace_events_dropped_total).
	EventQueueSize = 1024
)

var (
	eventsDroppedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podgrace_events_dropped_total",
		Help: "Kubernetes Events podgrace did not record because its bounded event queue was full.",
	})
	eventsQueuedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podgrace_events_queued_total",
		Help: "Admissions with something to report queued for a Kubernetes Event (before client-go's aggregation and rate limit).",
	})
)

func init() { register(eventsDroppedTotal, eventsQueuedTotal) }

// podEvent is what an admission hands to the event queue: copies of the few
// strings the event needs, so the request's pod is not kept alive.
type podEvent struct {
	namespace, pod string
	owner          *metav1.OwnerReference
	eventType      string
	reason         string
	messages       []string
}

// Events records what podgrace did not do on a pod as Kubernetes Events on
// the pod's top-level controller (the ReplicaSet's Deployment, the Job's
// CronJob) or the pod itself, off the request path: Enqueue never blocks,
// and a worker looks the owners up in a metadata-only cache and hands the
// events to client-go's recorder, which aggregates similar events and rate-
// limits them per object (a rollout of many pods with one typo makes a few
// Events with a count, not one per pod).
type Events struct {
	queue    chan podEvent
	owners   client.Reader // metadata-only cache of ReplicaSets and Jobs
	live     client.Reader // the API server, when the cache has not seen an owner yet
	recorder record.EventRecorder
	shutdown func()
	log      logr.Logger
}

// NewEvents builds the event queue; Start runs it.
func NewEvents(cs kubernetes.Interface, owners, live client.Reader, log logr.Logger) *Events {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	rec := b.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "podgrace"})
	return &Events{
		queue:    make(chan podEvent, EventQueueSize),
		owners:   owners,
		live:     live,
		recorder: rec,
		shutdown: b.Shutdown,
		log:      log,
	}
}

// Enqueue queues the events of one admission; it never blocks.
func (e *Events) Enqueue(ev podEvent) {
	select {
	case e.queue <- ev:
		eventsQueuedTotal.Inc()
	default:
		eventsDroppedTotal.Inc()
	}
}

// Start records queued events until ctx ends (a controller-runtime Runnable).
// The recorder is shut down (its last events flushed) when it returns.
func (e *Events) Start(ctx context.Context) error {
	defer e.shutdown()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-e.queue:
			e.record(ctx, ev)
		}
	}
}

// NeedLeaderElection is false: every replica records the events of its own admissions.
func (e *Events) NeedLeaderElection() bool { return false }

func (e *Events) record(ctx context.Context, ev podEvent) {
	ref := e.target(ctx, ev)
	if ref == nil {
		return
	}
	for _, m := range ev.messages {
		e.recorder.Event(ref, ev.eventType, ev.reason, m)
	}
}

// target is the object the event goes on: the top-level controller, found
// through ownerReferences (ReplicaSet → Deployment, Job → CronJob), else the
// pod when it has a name (a bare pod; pods of controllers have only a
// generateName at admission).
func (e *Events) target(ctx context.Context, ev podEvent) *corev1.ObjectReference {
	if ev.owner == nil {
		if ev.pod == "" {
			return nil
		}
		return &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ev.namespace, Name: ev.pod}
	}
	ref := ownerRef(ev.namespace, ev.owner)
	for range 2 { // a Deployment's ReplicaSet, or a CronJob's Job
		gv := strings.SplitN(ref.APIVersion, "/", 2)
		if len(gv) != 2 || (gv[0] != "apps" || ref.Kind != "ReplicaSet") && (gv[0] != "batch" || ref.Kind != "Job") {
			break
		}
		meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: ref.APIVersion, Kind: ref.Kind}}
		key := client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}
		err := e.owners.Get(ctx, key, meta)
		if apierrors.IsNotFound(err) && e.live != nil {
			// Created a moment ago: the cache may not have it yet.
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = e.live.Get(lctx, key, meta)
			cancel()
		}
		if err != nil {
			e.log.V(1).Info("Owner lookup failed; the event goes on the owner found so far", "owner", ref.Kind+"/"+ref.Name, "error", err.Error())
			break
		}
		up := metav1.GetControllerOf(meta)
		if up == nil {
			break
		}
		ref = ownerRef(ref.Namespace, up)
	}
	return ref
}

func ownerRef(namespace string, o *metav1.OwnerReference) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: namespace, Name: o.Name, UID: o.UID}
}

// eventOf is the event of one admission, or false when there is nothing to
// say. Messages leave out the pod's name, so that the recorder folds the
// same problem of many pods into one Event with a count.
func eventOf(pod *corev1.Pod, owner *metav1.OwnerReference, warnings []inject.Warning, denied string) (podEvent, bool) {
	ev := podEvent{namespace: pod.Namespace, pod: pod.Name, eventType: corev1.EventTypeWarning}
	if owner != nil {
		o := *owner
		ev.owner = &o
	}
	if denied != "" {
		ev.reason, ev.messages = EventDenied, []string{"pod denied: " + denied}
		return ev, true
	}
	if len(warnings) == 0 {
		return ev, false
	}
	var invalid, other []string
	for _, w := range warnings {
		if w.Code == inject.WarnInvalidSetting {
			invalid = append(invalid, w.Message)
		} else {
			other = append(other, w.Message)
		}
	}
	switch {
	case len(invalid) > 0:
		invalid = append(invalid, other...)
		ev.reason, ev.messages = EventInvalidSetting, invalid
	default:
		ev.reason, ev.messages = EventNotApplied, other
	}
	return ev, true
}
