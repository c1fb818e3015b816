package testkube

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSleepActionOn(t *testing.T) {
	off := map[string]string{"feature-gates": "Foo=true,PodLifecycleSleepAction=false"}
	on := map[string]string{"feature-gates": "PodLifecycleSleepAction=true"}
	cases := []struct {
		version string
		flags   map[string]string
		want    bool
	}{
		{"v1.28.15", nil, false},
		{"v1.28.15", on, false}, // no such gate yet
		{"v1.29.15", nil, false},
		{"v1.29.15", on, true},
		{"v1.30.14", nil, true},
		{"v1.30.14", off, false},
		{"v1.33.13", off, false},
		{"v1.34.0", off, true}, // GA: locked on
		{"v1.37.2", nil, true},
	}
	for _, tc := range cases {
		got, err := SleepActionOn(tc.version, tc.flags)
		if err != nil || got != tc.want {
			t.Errorf("%s %v: %t, %v; want %t", tc.version, tc.flags, got, err, tc.want)
		}
	}
}

func TestFlags(t *testing.T) {
	t.Setenv(FlagsEnv, "--feature-gates=A=true,B=false  --v=2")
	f, err := Flags()
	if err != nil || len(f) != 2 || f["feature-gates"] != "A=true,B=false" || f["v"] != "2" {
		t.Errorf("%v %v", f, err)
	}
	t.Setenv(FlagsEnv, "feature-gates=A=true")
	if _, err := Flags(); err == nil {
		t.Error("a flag without -- accepted")
	}
}

func TestNotApplicableReports(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report")
	t.Setenv(ReportEnv, report)
	t.Setenv(FlagsEnv, "--feature-gates=PodLifecycleSleepAction=false")
	NotApplicable(t, Server("v1.30.14"), "no sleep action")
	NotApplicable(t, "v1.29.15", "second")
	got, err := os.ReadFile(report)
	want := "not applicable on v1.30.14 (--feature-gates=PodLifecycleSleepAction=false): TestNotApplicableReports: no sleep action\n" +
		"not applicable on v1.29.15: TestNotApplicableReports: second\n"
	if err != nil || string(got) != want {
		t.Errorf("report %q, %v; want %q", got, err, want)
	}
}
