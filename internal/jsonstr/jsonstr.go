// Package jsonstr appends JSON strings exactly as encoding/json encodes them,
// without its reflection and allocations, for the strings of the JSON patch
// podgrace writes on every admission: ops, paths and its status annotation
// (JSON in a JSON string, so full of quotes). Anything else takes
// encoding/json itself.
package jsonstr

import "encoding/json"

// Append appends s to dst as a JSON string, byte for byte as json.Marshal
// encodes it (HTML-safe escaping included).
func Append(dst []byte, s string) []byte {
	orig := len(dst)
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		case c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&':
			// Control characters, HTML-sensitive ones and non-ASCII
			// (invalid UTF-8, U+2028 and U+2029 have their own rules):
			// drop what was written and let encoding/json do it all.
			q, _ := json.Marshal(s) // a string always encodes
			return append(dst[:orig], q...)
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
