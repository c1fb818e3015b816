package jsonstr

import (
	"encoding/json"
	"testing"
)

func check(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := Append([]byte("prefix"), s); string(got) != "prefix"+string(want) {
		t.Fatalf("Append(%q) = %s, want %s", s, got[len("prefix"):], want)
	}
}

func TestAppend(t *testing.T) {
	for _, s := range []string{
		"", "plain", `{"graceBefore":30,"containers":[{"name":"app"}]}`, `back\slash`, `"`, `\`, `\"\\"`,
		"tab\t", "nl\n", "\x00\x1f\x7f", "<b>&amp;</b>", "é漢字", "bad \xff\xfe utf8", "sep \u2028\u2029",
		"/metadata/annotations/podgrace.dev~1status",
	} {
		check(t, s)
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "\x00", "<>&", "\u2028", "\xff", "é"} {
		f.Add(s)
	}
	f.Fuzz(check)
}
