//go:build podgrace_stddecode

package webhook

// fastRejectsDuplicateNames: on this build decodeFast is sigs.k8s.io/json,
// as decode is, and takes duplicate keys; no body reaches the fallback.
const fastRejectsDuplicateNames = false
