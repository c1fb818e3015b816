package imageconfig

import "k8s.io/utils/lru"

// cache is a typed view of k8s.io/utils/lru: a fixed-size, least-recently
// used map, safe for concurrent use. Expiry, where wanted, lives in the
// values: the tag and error caches keep a deadline next to what they store,
// so a stale tag entry can still say which digest it pointed at.
type cache[V any] struct{ c *lru.Cache }

func newLRU[V any](maxEntries int) *cache[V] { return &cache[V]{c: lru.New(maxEntries)} }

func (c *cache[V]) get(key string) (V, bool) {
	v, ok := c.c.Get(key)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

func (c *cache[V]) add(key string, val V) { c.c.Add(key, val) }

func (c *cache[V]) remove(key string) { c.c.Remove(key) }

func (c *cache[V]) len() int { return c.c.Len() }
