//go:build scale

package growth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// parallel runs f(0..n-1) on workers goroutines; the first error fails t.
func parallel(t *testing.T, n, workers int, f func(k int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range workers {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				if err := f(k); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// TestMemoryGrowth: the webhook's memory (VmRSS and the live heap after a
// forced GC) with 100, 1,000 and 10,000 namespaces in the API server (its
// namespace informer is metadata-only), then with 100 and 10,000 distinct
// images through the image cache, with the default cache bounds (1,000
// entries, 16 MiB) and with the entry bound lifted (cacheSize 20,000), so
// that every image stays cached and the bytes per cached image show.
func TestMemoryGrowth(t *testing.T) {
	ctx := t.Context()
	t.Run("namespaces", func(t *testing.T) {
		wh := startWebhook(t, "namespaces", "imageInspection:\n  enabled: false\n")
		time.Sleep(3 * time.Second)
		base := wh.settle(t)
		list, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := len(list.Items)
		t.Logf("RESULT namespaces %d (before): VmRSS %.1f MiB, heap %.1f MiB", have, mib(base.rss), mib(base.heap))
		type point struct {
			n int
			m settled
		}
		points := []point{{have, base}}
		for _, target := range []int{100, 1000, 10000} {
			add := target - have
			start := time.Now()
			parallel(t, add, 32, func(k int) error {
				_, err := kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
					Name:        fmt.Sprintf("grow-%05d", have+k),
					Labels:      map[string]string{"team": fmt.Sprintf("team-%03d", k%200), "env": "prod"},
					Annotations: map[string]string{"owner": fmt.Sprintf("owner-%05d@example.com", have+k)},
				}}, metav1.CreateOptions{})
				return err
			})
			created := time.Since(start)
			have = target
			time.Sleep(5 * time.Second) // the informer's watch delivers them
			m := wh.settle(t)
			points = append(points, point{target, m})
			t.Logf("RESULT namespaces %d: created %d in %v; VmRSS %.1f MiB (VmHWM %.1f), heap %.1f MiB", target, add, created.Round(time.Millisecond), mib(m.rss), mib(m.hwm), mib(m.heap))
		}
		var rows []string
		for i, p := range points {
			row := fmt.Sprintf("| %d | %.1f | %.1f | %.1f |", p.n, mib(p.m.rss), mib(p.m.hwm), mib(p.m.heap))
			if i > 0 {
				q := points[i-1]
				dn := int64(p.n - q.n)
				row += fmt.Sprintf(" %d | %d |", (p.m.heap-q.m.heap)/dn, (p.m.rss-q.m.rss)/dn)
			} else {
				row += " | |"
			}
			rows = append(rows, row)
		}
		first, last := points[1], points[len(points)-1]
		perNS := float64(last.m.heap-first.m.heap) / float64(last.n-first.n)
		t.Logf("RESULT namespaces table (heap growth per namespace 100→10,000: %.0f bytes)\n| namespaces | VmRSS MiB | VmHWM MiB | live heap MiB | heap bytes per added namespace | RSS bytes per added namespace |\n|---|---|---|---|---|---|\n%s", perNS, strings.Join(rows, "\n"))
		// A metadata-only informer keeps names, labels and annotations: a
		// few hundred bytes to a few KiB per namespace, never full objects.
		if perNS > 8<<10 {
			t.Errorf("the live heap grows by %.0f bytes per namespace; a metadata-only informer should stay under 8 KiB", perNS)
		}
	})

	t.Run("images", func(t *testing.T) {
		const most = 10000
		ip := hostIP(t)
		st := newStore(t)
		start := time.Now()
		st.pushShellForm(t, most)
		t.Logf("pushed %d images in %v", most, time.Since(start).Round(time.Millisecond))
		ep := serve(t, ip, st, 0, false)
		var rows []string
		for _, c := range []struct{ id, name, cfg string }{
			{"default", "default bounds (1,000 entries, 16 MiB)", ""},
			{"big", "cacheSize 20,000 (16 MiB)", "  cacheSize: 20000\n"},
		} {
			wh := startWebhook(t, "images-"+c.id, "imageInspection:\n  enabled: true\n  insecureRegistries: [\""+ep.host+"\"]\n"+c.cfg)
			ns := servedNamespace(t, wh)
			time.Sleep(3 * time.Second)
			base := wh.settle(t)
			hc := tlsClient()
			done := 0
			prev := base
			for _, n := range []int{100, most} {
				t0 := time.Now()
				parallel(t, n-done, 16, func(k int) error {
					return review(hc, wh.url, ns, fmt.Sprintf("%s/app-%05d:1", ep.host, done+k))
				})
				took := time.Since(t0)
				done = n
				m := wh.settle(t)
				fams := scrape(t, wh.metrics)
				misses := fams.sum("podgrace_image_lookups_total", map[string]string{"result": "miss"})
				errs := fams.sum("podgrace_image_lookups_total", map[string]string{"result": "error"})
				if errs > 0 || int(misses) != n {
					t.Errorf("%s: %v lookups asked the registry, %v failed, after %d images; want %d and 0", c.name, misses, errs, n, n)
				}
				row := fmt.Sprintf("| %s | %d | %.1f s | %.1f | %.1f | %.1f | %d |", c.name, n, took.Seconds(), mib(m.rss), mib(m.hwm), mib(m.heap), (m.heap-base.heap)/int64(n))
				rows = append(rows, row)
				t.Logf("RESULT images %s: %d images reviewed in %v; VmRSS %.1f MiB (VmHWM %.1f), heap %.1f MiB (+%.1f MiB since idle, +%.1f since the previous step)",
					c.name, n, took.Round(time.Millisecond), mib(m.rss), mib(m.hwm), mib(m.heap), mib(m.heap-base.heap), mib(m.heap-prev.heap))
				prev = m
			}
			wh.stop()
		}
		t.Logf("RESULT images table\n| cache | distinct images | review time | VmRSS MiB | VmHWM MiB | live heap MiB | heap bytes per image since idle |\n|---|---|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
	})
}

// review posts one pod CREATE review naming image (no command, so the
// webhook inspects it) and checks that it was allowed and rewritten.
func review(c *http.Client, url, ns, image string) error {
	grace := int64(30)
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(image),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Name: "p", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(rev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("%s: %w: %s", image, err, b)
	}
	if out.Response == nil || !out.Response.Allowed || !bytes.Contains(out.Response.Patch, []byte("/command")) {
		return fmt.Errorf("%s: not rewritten: %s", image, b)
	}
	if len(out.Response.Warnings) > 0 {
		return fmt.Errorf("%s: warnings %q", image, out.Response.Warnings)
	}
	return nil
}
