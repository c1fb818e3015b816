//go:build !podgrace_stddecode

package webhook

// fastRejectsDuplicateNames: decodeFast (go-json-experiment/json) refuses
// an object with a duplicate key, which sends such a body to decode.
const fastRejectsDuplicateNames = true
