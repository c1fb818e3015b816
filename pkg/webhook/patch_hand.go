//go:build !podgrace_stdpatch

package webhook

// handPatch: encodePatch writes the JSON patch by hand. The build tag
// podgrace_stdpatch encodes it with encoding/json instead, for
// `make bench-codecs` to measure what that is worth (docs/records/benchmarks.md).
const handPatch = true
