//go:build podgrace_stdpatch

package webhook

// handPatch is false: this build encodes the patch with encoding/json.
const handPatch = false
