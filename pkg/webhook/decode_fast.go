//go:build !podgrace_stddecode

package webhook

import jsonv2 "github.com/go-json-experiment/json"

// decodeFast decodes as decode does, on github.com/go-json-experiment/json,
// which decodes in one pass. It is the fast path only: a body it rejects goes
// through decode (docs/develop/internals.md); TestDecodeFastAgrees and FuzzDecodeFast
// check that what it accepts it decodes as decode does. The build tag
// podgrace_stddecode builds the same one-pass decode on sigs.k8s.io/json
// instead, for `make bench-codecs` to measure what this is worth
// (docs/records/benchmarks.md).
func decodeFast(data []byte, v any) error {
	return jsonv2.Unmarshal(data, v)
}
