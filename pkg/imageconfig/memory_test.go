package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/internal/imagetest"
)

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestHostileConfigsMemory is the attack of issue 23's finding 2: a
// registry serving configs of almost 4 MiB (one Cmd string). Without
// bounds, each inspected image stayed in the cache (355 MiB after three
// 12-container pods) and went whole into the admission response. Now: the
// argv beyond MaxArgvBytes is refused (ErrTooLarge, a warning), nothing of
// it is kept, and what Lookup hands the core is bounded. Not parallel: it
// measures the heap.
func TestHostileConfigsMemory(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	const images = 3
	huge := strings.Repeat("x", maxConfigSize-64<<10) // the config stays under the 4 MiB read bound
	var refs []string
	for k := range images {
		reg.Push(t, "huge", fmt.Sprint(k), imagetest.Image{Cmd: []string{"/bin/sh", "-c", huge + fmt.Sprint(k)}})
		refs = append(refs, reg.Ref(fmt.Sprintf("huge:%d", k)))
	}
	// A long deadline: on a loaded machine five 4 MiB reads in parallel can
	// take more than the default 2s, and a lookup cut short would still be
	// running (detached) when the heap is measured.
	i, _ := newInspector(Options{Timeout: 30 * time.Second}, reg)
	before := heapInUse()
	pod := &corev1.Pod{}
	infos := i.Lookup(nil)(context.Background(), pod, refs)
	after := heapInUse()
	for _, ref := range refs {
		info := infos[ref]
		if !errors.Is(info.Err, ErrTooLarge) || info.Cmd != nil || info.Entrypoint != nil {
			t.Errorf("%s: cmd of %d bytes, err %v; want ErrTooLarge and nothing to copy", ref, len(strings.Join(info.Cmd, "")), info.Err)
		}
	}
	// 3 configs of 4 MiB read: what stays is the cache's record that they
	// are too large, a few hundred bytes each.
	if grew := after - before; grew > 1<<20 {
		t.Errorf("the heap grew by %d bytes after inspecting %d configs of %d bytes, want under 1 MiB", grew, images, maxConfigSize)
	}
	if u := i.nodes.usage(); u > 16<<10 {
		t.Errorf("the digest cache accounts %d bytes for %d refused configs", u, images)
	}
	runtime.KeepAlive(i)
	runtime.KeepAlive(infos)
}

// TestCacheBoundedInBytes: configs just under MaxArgvBytes, many more than
// CacheBytes holds: the cache's estimate stays within CacheBytes, and the
// heap it really holds within twice that (the estimate is not exact).
// Not parallel: it measures the heap.
func TestCacheBoundedInBytes(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	const (
		images = 150
		budget = 1 << 20
	)
	arg := strings.Repeat("y", MaxArgvBytes-64)
	var refs []string
	for k := range images {
		d := reg.Push(t, "big", fmt.Sprint(k), imagetest.Image{Cmd: []string{fmt.Sprint(k), arg}})
		refs = append(refs, reg.Ref("big@"+d))
	}
	i, _ := newInspector(Options{CacheBytes: budget, Timeout: 30 * time.Second}, reg)
	before := heapInUse()
	for _, ref := range refs {
		res := inspect(t, i, Request{Image: ref})
		if len(res.Config.Cmd) != 2 {
			t.Fatalf("%s: %q", ref, res.Config.Cmd)
		}
	}
	after := heapInUse()
	total := int64(images * MaxArgvBytes)
	if u := i.nodes.usage(); u > budget || u < budget/2 {
		t.Errorf("the cache accounts %d bytes for a %d-byte budget", u, budget)
	}
	if grew := after - before; grew > 2*budget {
		t.Errorf("the heap grew by %d bytes (%.2f× the %d-byte budget) after caching %d bytes of configs", grew, float64(grew)/budget, budget, total)
	}
	t.Logf("%d bytes of argv inspected, cache estimate %d, heap growth %d (budget %d)", total, i.nodes.usage(), after-before, budget)
	runtime.KeepAlive(i)
}
