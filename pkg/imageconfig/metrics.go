package imageconfig

import "time"

// Metrics receives what the Inspector observes. The webhook implements it
// with Prometheus collectors; this package only calls it. Implementations
// must be safe for concurrent use and cheap: they run on the admission path.
type Metrics interface {
	// ObserveLookup is called once per Inspect with its outcome — LookupHit
	// (answered from the caches, no registry request), LookupMiss (the
	// registry was asked, or a concurrent identical request was joined) or
	// LookupError — and how long it took.
	ObserveLookup(result string, d time.Duration)
	// CacheHit is called each time a cache answers: CacheTag (tag→digest),
	// CacheConfig (digest→config or index) or CacheError (a remembered
	// failure was returned instead of asking the registry again).
	CacheHit(kind string)
	// Error is called once per failed Inspect with ErrorKind(err).
	Error(kind string)
}

// Values of ObserveLookup's result.
const (
	LookupHit   = "hit"
	LookupMiss  = "miss"
	LookupError = "error"
)

// Values of CacheHit's kind.
const (
	CacheTag    = "tag"
	CacheConfig = "config"
	CacheError  = "error"
)

type nopMetrics struct{}

func (nopMetrics) ObserveLookup(string, time.Duration) {}
func (nopMetrics) CacheHit(string)                     {}
func (nopMetrics) Error(string)                        {}
