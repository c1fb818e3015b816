// Package repo holds checks on the repository as a whole: what its files cite
// and how long its README is.
package repo

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/podgrace/podgrace/pkg/calibrate"
	"github.com/podgrace/podgrace/pkg/registration"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// textFiles returns every text file of the repository (relative paths),
// skipping build output and git's own directory.
func textFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "dist":
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(data, 0) >= 0 {
			return nil // binary
		}
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["go.mod"]; !ok {
		t.Fatalf("%s is not the repository root", root)
	}
	return files
}

// relPath matches a path that starts by climbing out of its directory.
var relPath = regexp.MustCompile(`(?:\.\./)+[A-Za-z0-9_.\-/]*`)

// TestCitationsStayInside: the project stands alone. A reader of any file can
// open what it cites, so no file cites a document by a relative path that
// leaves the repository, and none cites the external design contract the
// project's own docs/design.md replaces.
func TestCitationsStayInside(t *testing.T) {
	t.Parallel()
	external := []string{"DESIGN" + ".md", "DESIGN" + " §"}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for rel, data := range textFiles(t) {
		for i, line := range strings.Split(string(data), "\n") {
			for _, e := range external {
				if strings.Contains(line, e) {
					t.Errorf("%s:%d cites %q, which is not in the repository; cite docs/design.md §N", rel, i+1, e)
				}
			}
			for _, p := range relPath.FindAllString(line, -1) {
				target := filepath.Join(absRoot, filepath.Dir(rel), p)
				if r, err := filepath.Rel(absRoot, target); err != nil || r == ".." || strings.HasPrefix(r, "../") {
					t.Errorf("%s:%d cites %q, outside the repository", rel, i+1, p)
				}
			}
		}
	}
}

// The check above must see a citation that leaves the repository.
func TestRelPathFindsEscapes(t *testing.T) {
	t.Parallel()
	if got := relPath.FindAllString("see ../../other/DESIGN (and ../README.md)", -1); len(got) != 2 || got[0] != "../../other/DESIGN" {
		t.Errorf("relPath found %q", got)
	}
}

// TestREADMELength: README.md is for a platform engineer and fits a screen or
// two; details belong in docs/.
func TestREADMELength(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n > 250 {
		t.Errorf("README.md has %d lines; keep it at 250 or fewer and move details to docs/", n)
	}
}

// TestE2EDocsListEveryTest: docs/develop/e2e.md describes each e2e test under a
// heading naming it, so the count a reader sees cannot drift from the code.
func TestE2EDocsListEveryTest(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "develop", "e2e.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^### .*\\(`(Test\\w+)`\\)\\s*$").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	files, err := filepath.Glob(filepath.Join(root, "test", "e2e", "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no e2e tests found: %v", err)
	}
	code := map[string]bool{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`).FindAllStringSubmatch(string(src), -1) {
			code[m[1]] = true
		}
	}
	for name := range code {
		if !documented[name] {
			t.Errorf("test/e2e has %s, docs/develop/e2e.md has no `### … (`%s`)` section for it", name, name)
		}
	}
	for name := range documented {
		if !code[name] {
			t.Errorf("docs/develop/e2e.md describes %s, which test/e2e does not have", name)
		}
	}
}

// TestMarkdownLinksResolve: every relative link of a Markdown file points at a
// file or directory of the repository.
func TestMarkdownLinksResolve(t *testing.T) {
	t.Parallel()
	link := regexp.MustCompile(`\]\(([^)#\s]+)(?:#[^)\s]*)?\)`)
	for rel, data := range textFiles(t) {
		if !strings.HasSuffix(rel, ".md") {
			continue
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.Dir(rel), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", rel, target)
			}
		}
	}
}

// TestCodecTagsCovered: each build tag that swaps a hand-written codec for
// the standard one (//go:build podgrace_std…) is tested by `make test`
// (CODEC_TAGS in the Makefile) and can be measured by `make bench-codecs`
// (variantTags in test/bench), so neither build rots unseen.
func TestCodecTagsCovered(t *testing.T) {
	t.Parallel()
	files := textFiles(t)
	tagRE := regexp.MustCompile(`podgrace_std[a-z]+`)
	declared := map[string]bool{}
	for name, data := range files {
		if !strings.HasSuffix(name, ".go") {
			continue
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if strings.HasPrefix(line, "//go:build ") {
				for _, tag := range tagRE.FindAllString(line, -1) {
					declared[tag] = true
				}
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("no //go:build line names a podgrace_std… tag: update this test")
	}
	makeTags := regexp.MustCompile(`(?m)^CODEC_TAGS := (.*)$`).FindStringSubmatch(string(files["Makefile"]))
	if makeTags == nil {
		t.Fatal("the Makefile has no CODEC_TAGS := line")
	}
	bench := string(files[filepath.Join("test", "bench", "main_test.go")])
	for tag := range declared {
		if !strings.Contains(","+makeTags[1]+",", ","+tag+",") {
			t.Errorf("//go:build names %s, the Makefile's CODEC_TAGS (%s) does not: make test never builds it", tag, makeTags[1])
		}
		if !strings.Contains(bench, `"`+tag+`"`) {
			t.Errorf("//go:build names %s, test/bench's variantTags has no variant of it alone", tag)
		}
	}
}

// namespaceFlag matches podgrace's namespace where docs and help texts write
// one: a -n/--namespace/--release-namespace value, a --config-map NS/NAME,
// or a `namespace:` field, naming podgrace.
var namespaceFlag = regexp.MustCompile(`(?:-n|--namespace|--release-namespace|--config-map|namespace:)[ =]+([a-z0-9-]*podgrace[a-z0-9-]*)`)

// TestOneNamespace: every doc, the chart's notes and the CLI's help install
// or find podgrace in one namespace, the README's (registration.DefaultNamespace),
// which the CLI falls back to when the cluster does not name another.
func TestOneNamespace(t *testing.T) {
	t.Parallel()
	checked := 0
	for rel, data := range textFiles(t) {
		cliHelp := strings.HasPrefix(rel, filepath.Join("pkg", "cli")) && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go")
		if !strings.HasSuffix(rel, ".md") && filepath.Base(rel) != "NOTES.txt" && !cliHelp {
			continue
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range namespaceFlag.FindAllStringSubmatch(line, -1) {
				checked++
				if m[1] != registration.DefaultNamespace && m[1] != calibrate.DefaultNamespace { // calibrate's own namespace is another fact
					t.Errorf("%s:%d names podgrace's namespace %q; the one namespace is %q", rel, i+1, m[1], registration.DefaultNamespace)
				}
			}
		}
	}
	if checked < 3 {
		t.Errorf("only %d namespace literals found: the pattern no longer matches the docs", checked)
	}
}

// The check above must see each way a namespace is written.
func TestNamespaceFlagFinds(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"helm install p c -n podgrace", "--namespace=podgrace", "--config-map podgrace/podgrace", "  namespace: podgrace-old"} {
		if m := namespaceFlag.FindStringSubmatch(s); m == nil || !strings.HasPrefix(m[1], "podgrace") {
			t.Errorf("%q: found %q", s, m)
		}
	}
}

// TestKubeVersionOnce: the Makefile's KUBE_VERSION is the version CI builds
// and tests against; the Go code that needs it (chart.KubeVersion, which the
// chart tests also take their envtest assets' directory from) says the same.
func TestKubeVersionOnce(t *testing.T) {
	t.Parallel()
	files := textFiles(t)
	mk := regexp.MustCompile(`(?m)^KUBE_VERSION \?= (\S+)$`).FindStringSubmatch(string(files["Makefile"]))
	gov := regexp.MustCompile(`(?m)^const KubeVersion = "v([^"]+)"$`).FindStringSubmatch(string(files[filepath.Join("hack", "manifests", "chart", "chart.go")]))
	if mk == nil || gov == nil {
		t.Fatalf("KUBE_VERSION in the Makefile: %v; KubeVersion in hack/manifests/chart/chart.go: %v", mk, gov)
	}
	if mk[1] != gov[1] {
		t.Errorf("the Makefile's KUBE_VERSION is %s, chart.KubeVersion v%s", mk[1], gov[1])
	}
}

// TestOldestVersionDeclaredOnce: the oldest supported Kubernetes is declared
// once, OLDEST_KUBE_VERSION in the Makefile (make test runs the API-server
// suites on it): the floor of the chart's kubeVersion is its minor, and
// TEST_VERSIONS runs it (with and without the sleep action) through OLDEST,
// not a copy of the number.
func TestOldestVersionDeclaredOnce(t *testing.T) {
	t.Parallel()
	files := textFiles(t)
	mk := string(files["Makefile"])
	m := regexp.MustCompile(`(?m)^OLDEST_KUBE_VERSION \?= (\d+)\.(\d+)\.(\d+)$`).FindStringSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile has no OLDEST_KUBE_VERSION ?= X.Y.Z line")
	}
	floor := `kubeVersion: ">=` + m[1] + "." + m[2] + `.0-0"`
	if !strings.Contains(string(files[filepath.Join("charts", "podgrace", "Chart.yaml")]), floor) {
		t.Errorf("charts/podgrace/Chart.yaml has no %s: the chart's floor and OLDEST_KUBE_VERSION %s.%s.%s disagree", floor, m[1], m[2], m[3])
	}
	if got := strings.Count(mk, m[1]+"."+m[2]+"."+m[3]); got != 1 {
		t.Errorf("the Makefile names %s.%s.%s %d times; derive from OLDEST_KUBE_VERSION", m[1], m[2], m[3], got)
	}
	if !regexp.MustCompile(`(?m)^\t\$\(OLDEST\) \\$`).MatchString(mk) || !strings.Contains(mk, "$(OLDEST)/--feature-gates=PodLifecycleSleepAction=false") {
		t.Error("TEST_VERSIONS does not run $(OLDEST) with and without the sleep action")
	}
	if !regexp.MustCompile(`(?m)^\tGO='\$\(GO\)' hack/test-versions\.sh \$\(OLDEST\)$`).MatchString(mk) {
		t.Error("make test does not run hack/test-versions.sh $(OLDEST)")
	}
}
