package chart_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// kubeScoreOptional are the optional kube-score checks run besides its
// defaults. The requests-equal-limits checks stay off: they ask for a CPU
// limit, which docs/operate/install.md declines.
var kubeScoreOptional = []string{"container-seccomp-profile", "container-ports-check"}

// kubeScoreFinding is one check of one object that did not pass.
type kubeScoreFinding struct{ check, object string }

// TestKubeScore runs kube-score (a third-party linter, $KUBE_SCORE, built by
// the Makefile) on the chart as rendered for every case, and fails on any
// finding that the table in docs/operate/install.md § kube-score does not answer,
// and on any answer for a finding that no longer occurs.
func TestKubeScore(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("KUBE_SCORE")
	if bin == "" {
		t.Fatal("KUBE_SCORE is not set: run `make kube-score` (it builds kube-score into bin/ and sets it)")
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("KUBE_SCORE=%s: %v (`make kube-score` builds it)", bin, err)
	}
	answered := answeredFindings(t)
	seen := map[kubeScoreFinding]bool{}
	for _, c := range cases() {
		r := render(t, rel, c.values)
		// Helm hooks (the `helm test` pod and its RBAC) exist only while
		// `helm test` runs; kube-score judges what an install leaves running.
		var installed []*unstructured.Unstructured
		for _, o := range r.Objects {
			if _, hook := o.GetAnnotations()["helm.sh/hook"]; !hook {
				installed = append(installed, o)
			}
		}
		yml, err := chart.ToYAML(installed)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range kubeScore(t, bin, yml) {
			seen[kubeScoreFinding{f.check, f.object}] = true
			if _, ok := answered[kubeScoreFinding{f.check, f.object}]; !ok {
				t.Errorf("%s: kube-score %s on %s is not answered in docs/operate/install.md: %s", c.name, f.check, f.object, f.summary)
			} else {
				t.Logf("%s: %s on %s (answered): %s", c.name, f.check, f.object, f.summary)
			}
		}
	}
	for f := range answered {
		if !seen[f] {
			t.Errorf("docs/operate/install.md answers kube-score %s on %s, which no case finds any more: remove it", f.check, f.object)
		}
	}
}

type kubeScoreResult struct {
	kubeScoreFinding
	summary string
}

// kubeScore scores a YAML stream and returns what did not pass.
func kubeScore(t *testing.T, bin string, yml []byte) []kubeScoreResult {
	t.Helper()
	args := []string{"score", "-o", "json", "--kubernetes-version", kubeMinor()}
	for _, o := range kubeScoreOptional {
		args = append(args, "--enable-optional-test", o)
	}
	cmd := exec.Command(bin, append(args, "-")...)
	cmd.Stdin = bytes.NewReader(yml)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// kube-score exits 1 when it finds something critical; its JSON says what.
	var objs []struct {
		TypeMeta   struct{ Kind string } `json:"type_meta"`
		ObjectMeta struct{ Name string } `json:"object_meta"`
		Checks     []struct {
			Check struct {
				ID string `json:"id"`
			} `json:"check"`
			Grade    int  `json:"grade"`
			Skipped  bool `json:"skipped"`
			Comments []struct {
				Path    string `json:"path"`
				Summary string `json:"summary"`
			} `json:"comments"`
		} `json:"checks"`
	}
	if jerr := json.Unmarshal(out, &objs); jerr != nil || len(objs) == 0 {
		t.Fatalf("kube-score: %v, %v\n%s\n%s", err, jerr, stderr.String(), out)
	}
	var res []kubeScoreResult
	for _, o := range objs {
		for _, c := range o.Checks {
			if c.Skipped || c.Grade >= 10 { // 10: kube-score's "all OK"
				continue
			}
			var summaries []string
			for _, cm := range c.Comments {
				summaries = append(summaries, strings.TrimSpace(cm.Path+" "+cm.Summary))
			}
			res = append(res, kubeScoreResult{kubeScoreFinding{c.Check.ID, o.TypeMeta.Kind + "/" + o.ObjectMeta.Name}, strings.Join(summaries, "; ")})
		}
	}
	sort.Slice(res, func(i, j int) bool { return res[i].check+res[i].object < res[j].check+res[j].object })
	return res
}

// kubeMinor is chart.KubeVersion as kube-score takes it (v1.36).
func kubeMinor() string {
	parts := strings.SplitN(chart.KubeVersion, ".", 3)
	return parts[0] + "." + parts[1]
}

// answeredFindings reads the table of docs/operate/install.md § kube-score: one row
// a finding, `check` and `Kind/name` in its first two cells.
func answeredFindings(t *testing.T) map[kubeScoreFinding]string {
	t.Helper()
	path := filepath.Join(filepath.Dir(chartDir(t)), "..", "docs", "operate", "install.md")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	row := regexp.MustCompile("^\\| `([a-z-]+)` \\| `([A-Za-z]+/[a-z0-9-]+)` \\|(.*)\\|$")
	out := map[kubeScoreFinding]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			in = strings.HasSuffix(line, " kube-score")
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			answer := strings.TrimSpace(m[3])
			if answer == "" {
				t.Errorf("docs/operate/install.md: kube-score %s on %s has no answer", m[1], m[2])
			}
			out[kubeScoreFinding{m[1], m[2]}] = answer
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no section ending in \"kube-score\" with a table of `check` | `Kind/name` | answer rows", path)
	}
	return out
}
