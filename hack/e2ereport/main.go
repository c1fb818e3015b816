// Command e2ereport reads `go test -json` on stdin, prints the output as
// `go test -v` would, and when anything failed ends with a summary that
// repeats the whole output of each failed test (parallel tests interleave
// their lines; the summary does not) and of the package when it failed
// outside any test (setup, build, timeout panic). It exits 1 when a test or
// the package failed, or when the stream ends without the package's result.
//
//	go test -json ./test/e2e/... | e2ereport [-log FILE]
//
// `make e2e` uses it so that a failing run always says why.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// maxLines bounds how much of one test's output the summary repeats.
const maxLines = 400

func main() {
	logFile := flag.String("log", "", "also write the plain output to this file")
	flag.Parse()
	os.Exit(run(*logFile))
}

func run(logFile string) int {
	out := io.Writer(os.Stdout)
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2ereport:", err)
			return 2
		}
		defer func() { _ = f.Close() }()
		out = io.MultiWriter(os.Stdout, f)
	}
	return report(os.Stdin, out)
}

func report(in io.Reader, out io.Writer) int {
	outputs := map[string][]string{} // by test name; "" is the package's
	var failed []string
	pkgResult := ""
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			// Not an event (a build error the go command printed): keep it.
			_, _ = fmt.Fprintln(out, line)
			outputs[""] = append(outputs[""], line+"\n")
			continue
		}
		switch e.Action {
		case "output", "build-output":
			_, _ = io.WriteString(out, e.Output)
			outputs[e.Test] = append(outputs[e.Test], e.Output)
		case "fail":
			if e.Test != "" {
				failed = append(failed, e.Test)
			} else {
				pkgResult = "fail"
			}
		case "pass":
			if e.Test == "" && pkgResult == "" {
				pkgResult = "pass"
			}
		}
	}
	if err := sc.Err(); err != nil {
		_, _ = fmt.Fprintln(out, "e2ereport: reading the test stream:", err)
		pkgResult = "fail"
	}
	if pkgResult == "pass" && len(failed) == 0 {
		return 0
	}
	w := func(format string, args ...any) { _, _ = fmt.Fprintf(out, format, args...) }
	w("\n==================== E2E FAILURE SUMMARY ====================\n")
	if pkgResult == "" {
		w("The test stream ended without the package's result (the test binary was killed, or did not build).\n")
	}
	if len(failed) == 0 {
		w("No test failed by itself: the package failed outside any test. Its output:\n")
		w("%s", lastLines(outputs[""], maxLines))
	}
	for _, name := range failed {
		if hasFailedChild(name, failed) {
			continue // its failed subtests are printed on their own
		}
		w("---------- FAILED %s ----------\n%s", name, lastLines(outputs[name], maxLines))
	}
	w("Failed tests: %s\n", strings.Join(failed, " "))
	return 1
}

func hasFailedChild(name string, failed []string) bool {
	for _, f := range failed {
		if strings.HasPrefix(f, name+"/") {
			return true
		}
	}
	return false
}

func lastLines(chunks []string, n int) string {
	lines := strings.SplitAfter(strings.Join(chunks, ""), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines ...]\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}
