package inject

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncate: every warning is cut to MaxWarningLen bytes on a rune
// boundary, with an ellipsis; short ones are kept as they are.
func TestTruncate(t *testing.T) {
	t.Parallel()
	short := "podgrace: short"
	if got := Truncate(short); got != short {
		t.Errorf("Truncate(%q) = %q", short, got)
	}
	for _, s := range []string{strings.Repeat("a", 200), strings.Repeat("é", 100), "podgrace: " + strings.Repeat("日本", 60)} {
		got := Truncate(s)
		if len(got) > MaxWarningLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
			t.Errorf("Truncate(%.20q…) = %q (%d bytes)", s, got, len(got))
		}
	}
}
