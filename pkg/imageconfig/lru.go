package imageconfig

import (
	"container/list"
	"sync"
)

// cache is a least-recently used map bounded both in entries and in bytes,
// safe for concurrent use. size estimates what an entry holds in memory
// (its key included); an entry larger than the whole budget is not kept.
// Expiry, where wanted, lives in the values: the tag and error caches keep
// a deadline next to what they store, so a stale tag entry can still say
// which digest it pointed at.
type cache[V any] struct {
	mu         sync.Mutex
	ll         *list.List // front: most recently used
	items      map[string]*list.Element
	bytes      int64
	maxEntries int
	maxBytes   int64 // 0: entries only
	size       func(V) int64
}

type cacheEntry[V any] struct {
	key  string
	val  V
	size int64
}

// entryOverhead approximates what an entry costs besides its key and value:
// the list element, the map slot, the entry struct.
const entryOverhead = 160

func newLRU[V any](maxEntries int) *cache[V] {
	return newSizedLRU[V](maxEntries, 0, func(V) int64 { return 0 })
}

func newSizedLRU[V any](maxEntries int, maxBytes int64, size func(V) int64) *cache[V] {
	return &cache[V]{ll: list.New(), items: map[string]*list.Element{}, maxEntries: maxEntries, maxBytes: maxBytes, size: size}
}

func (c *cache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry[V]).val, true
}

func (c *cache[V]) add(key string, val V) {
	n := int64(len(key)) + c.size(val) + entryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.removeElement(e)
	}
	if c.maxBytes > 0 && n > c.maxBytes {
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry[V]{key: key, val: val, size: n})
	c.bytes += n
	for c.ll.Len() > c.maxEntries || (c.maxBytes > 0 && c.bytes > c.maxBytes) {
		c.removeElement(c.ll.Back())
	}
}

func (c *cache[V]) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.removeElement(e)
	}
}

func (c *cache[V]) removeElement(e *list.Element) {
	ce := e.Value.(*cacheEntry[V])
	c.ll.Remove(e)
	delete(c.items, ce.key)
	c.bytes -= ce.size
}

func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// usage is the estimated bytes the cache holds.
func (c *cache[V]) usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
