package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"output","Output":"e2e: node up\n"}`,
		`{"Action":"run","Test":"TestA"}`,
		`{"Action":"run","Test":"TestB"}`,
		`{"Action":"run","Test":"TestB/sub"}`,
		`{"Action":"output","Test":"TestA","Output":"a says hello\n"}`,
		`{"Action":"output","Test":"TestB/sub","Output":"sub broke: 3 requests failed\n"}`,
		`{"Action":"pass","Test":"TestA"}`,
		`{"Action":"fail","Test":"TestB/sub"}`,
		`{"Action":"fail","Test":"TestB"}`,
		`{"Action":"fail"}`,
	}, "\n")
	var out strings.Builder
	if rc := report(strings.NewReader(stream), &out); rc != 1 {
		t.Errorf("rc %d, want 1", rc)
	}
	_, summary, ok := strings.Cut(out.String(), "E2E FAILURE SUMMARY")
	if !ok {
		t.Fatalf("no summary:\n%s", out.String())
	}
	for _, want := range []string{"FAILED TestB/sub", "sub broke: 3 requests failed", "Failed tests: TestB/sub TestB"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if strings.Contains(summary, "a says hello") || strings.Contains(summary, "FAILED TestB ---") {
		t.Errorf("summary repeats a passing test or the parent of a failed subtest:\n%s", summary)
	}
}

func TestReportPass(t *testing.T) {
	var out strings.Builder
	stream := `{"Action":"output","Test":"TestA","Output":"ok\n"}` + "\n" + `{"Action":"pass","Test":"TestA"}` + "\n" + `{"Action":"pass"}`
	if rc := report(strings.NewReader(stream), &out); rc != 0 || strings.Contains(out.String(), "SUMMARY") {
		t.Errorf("rc %d, output %q", rc, out.String())
	}
}

// A test binary killed mid-run (no package result) and a build error are
// failures with the package's own output shown.
func TestReportNoResult(t *testing.T) {
	for name, stream := range map[string]string{
		"killed":      `{"Action":"output","Output":"e2e: building test images\n"}` + "\n" + `{"Action":"run","Test":"TestA"}`,
		"build error": "# github.com/podgrace/podgrace/test/e2e\nx.go:1: syntax error\nFAIL\tgithub.com/podgrace/podgrace/test/e2e [build failed]",
	} {
		var out strings.Builder
		if rc := report(strings.NewReader(stream), &out); rc != 1 || !strings.Contains(out.String(), "outside any test") {
			t.Errorf("%s: rc %d, output %q", name, rc, out.String())
		}
	}
}
