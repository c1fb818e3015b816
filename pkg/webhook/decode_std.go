//go:build podgrace_stddecode

package webhook

// decodeFast is decode in this build: the same single pass into podReview,
// on sigs.k8s.io/json.
func decodeFast(data []byte, v any) error {
	return decode(data, v)
}
