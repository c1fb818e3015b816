// Package jsonstr appends JSON strings exactly as encoding/json encodes them,
// without its reflection and allocations for the strings podgrace writes on
// every admission: patch paths and ops, container names, reasons, its status
// annotation (JSON in a JSON string, so full of quotes). Anything else takes
// encoding/json itself.
package jsonstr

import "encoding/json"

// Append appends s to dst as a JSON string, byte for byte as json.Marshal
// encodes it (HTML-safe escaping included).
func Append(dst []byte, s string) []byte {
	escapes := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			escapes++
		case c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&':
			// Control characters, HTML-sensitive ones and non-ASCII
			// (invalid UTF-8, U+2028 and U+2029 have their own rules).
			q, _ := json.Marshal(s) // a string always encodes
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	if escapes == 0 {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
