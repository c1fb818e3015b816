package webhook

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func fakeReader(t *testing.T, getErr error, namespaces ...*corev1.Namespace) (client.Reader, *int) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	objs := make([]client.Object, len(namespaces))
	for i, ns := range namespaces {
		objs[i] = ns
	}
	gets := new(int)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			*gets++
			if getErr != nil {
				return getErr
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	return c, gets
}

func TestNamespaceLookup(t *testing.T) {
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{"podgrace.dev/prestop-sleep": "20s"}}}
	want := shop.Annotations
	cases := map[string]struct {
		synced              bool
		cached, live        []*corev1.Namespace
		liveErr             error
		wantCached, wantAPI int
		wantErr             bool
	}{
		"cached":                     {synced: true, cached: []*corev1.Namespace{shop}, wantCached: 1},
		"not cached yet: API read":   {synced: true, live: []*corev1.Namespace{shop}, wantCached: 1, wantAPI: 1},
		"cache not synced: API read": {synced: false, cached: []*corev1.Namespace{shop}, live: []*corev1.Namespace{shop}, wantAPI: 1},
		"API read fails":             {synced: true, liveErr: errors.New("boom"), wantCached: 1, wantAPI: 1, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cached, cachedGets := fakeReader(t, nil, tc.cached...)
			live, liveGets := fakeReader(t, tc.liveErr, tc.live...)
			n := &namespaceAnnotations{cached: cached, live: live, synced: func() bool { return tc.synced }, log: logr.Discard()}
			before := testutil.ToFloat64(namespaceLookupsTotal.WithLabelValues("api"))
			got, err := n.lookup(t.Context(), "shop")
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !maps.Equal(got, want) {
				t.Errorf("annotations %v, want %v", got, want)
			}
			if *cachedGets != tc.wantCached || *liveGets != tc.wantAPI {
				t.Errorf("reads: cache %d, API %d; want %d, %d", *cachedGets, *liveGets, tc.wantCached, tc.wantAPI)
			}
			if !tc.wantErr && tc.wantAPI == 1 && testutil.ToFloat64(namespaceLookupsTotal.WithLabelValues("api")) <= before {
				t.Error("the API read was not counted")
			}
		})
	}
}
