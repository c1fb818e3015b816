package inject

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"sigs.k8s.io/randfill"
)

func checkAppendStatus(t *testing.T, st *Status) {
	t.Helper()
	want, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendStatus(nil, st); string(got) != string(want) {
		t.Fatalf("appendStatus:\n got %s\nwant %s", got, want)
	}
}

func TestAppendStatus(t *testing.T) {
	for _, st := range []*Status{
		{},
		{GraceBefore: 30, GraceAfter: 45, Containers: []ContainerReport{}},
		{GraceBefore: -1, GraceAfter: 1 << 40, Containers: []ContainerReport{
			{Name: "app", PreStopSleep: 15, Hook: "sleep", ExecForm: "exec", Image: "registry.example/app@sha256:0123"},
			{Name: "sidecar", Init: true, PreStopSkipped: "has-prestop", ExecFormSkipped: "not-shell"},
			{Name: "skipped", Skipped: "excluded"},
			{Name: `odd "name" \ <&> é` + "\n\xff"},
		}},
	} {
		checkAppendStatus(t, st)
	}
}

func FuzzAppendStatus(f *testing.F) {
	f.Add(int64(30), int64(45), "app", true, "reason", int64(10), "sleep", "exec", "img")
	f.Add(int64(0), int64(-1), "", false, "", int64(0), "", "", "")
	f.Add(int64(1), int64(2), "\"<\xff", false, "\\", int64(-5), "\u2028", "\x00", "é")
	f.Fuzz(func(t *testing.T, before, after int64, name string, init bool, skip string, sleep int64, hook, exec, image string) {
		checkAppendStatus(t, &Status{GraceBefore: before, GraceAfter: after, Containers: []ContainerReport{
			{Name: name, Init: init, Skipped: skip, PreStopSleep: sleep, Hook: hook, PreStopSkipped: skip,
				ExecForm: exec, ExecFormSkipped: skip, Image: image},
			{Name: image},
		}})
	})
}

// TestAppendStatusEveryField compares appendStatus with encoding/json on
// statuses with every field filled at random: a field added to Status or
// ContainerReport that appendStatus does not write fails here.
func TestAppendStatusEveryField(t *testing.T) {
	f := randfill.NewWithSeed(3).NilChance(0.1).NumElements(0, 4)
	filled := map[string]bool{}
	for range 500 {
		var st Status
		f.Fill(&st)
		checkAppendStatus(t, &st)
		for _, c := range st.Containers {
			v := reflect.ValueOf(c)
			for i := range v.NumField() {
				if !v.Field(i).IsZero() {
					filled[v.Type().Field(i).Name] = true
				}
			}
		}
	}
	for i := range reflect.TypeFor[ContainerReport]().NumField() {
		if name := reflect.TypeFor[ContainerReport]().Field(i).Name; !filled[name] {
			t.Errorf("ContainerReport.%s was never filled: the test does not cover it", name)
		}
	}
}

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
