package inject

import "encoding/json"

// PatchOp is one RFC 6902 operation of the core's JSON patch. The core only
// writes operations; applying them (in tests) is github.com/evanphx/json-patch/v5's job.
type PatchOp struct {
	Operation string `json:"op"`
	Path      string `json:"path"`
	Value     any    `json:"value,omitempty"`
}

// MarshalJSON writes `"value": null` for an add, replace or test of nil,
// which RFC 6902 requires and omitempty would drop.
func (o PatchOp) MarshalJSON() ([]byte, error) {
	if o.Value == nil && (o.Operation == "add" || o.Operation == "replace" || o.Operation == "test") {
		return json.Marshal(struct {
			Operation string `json:"op"`
			Path      string `json:"path"`
			Value     any    `json:"value"`
		}{o.Operation, o.Path, nil})
	}
	type plain PatchOp
	return json.Marshal(plain(o))
}
