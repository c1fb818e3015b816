package execform

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podgrace/podgrace/internal/execformcases"
)

// signalCase is a row of the PID 1 table.
type signalCase = execformcases.PID1

// The shells the command's first word is replaced with.
var realShells = map[string][]string{
	"dash":    {"dash"},
	"bash":    {"bash"},
	"busybox": {"busybox", "sh"},
}

var shellOrder = []string{"dash", "bash", "busybox"}

var signalCases = execformcases.PID1Cases

// TestSignalDelivery is the proof behind the rewrite (docs/design.md §5): each
// command of signalCases runs, before and after Rewrite, under dash, bash
// and busybox sh as PID 1 of a fresh PID namespace, as in a container. The
// test sends SIGTERM to that PID 1 from the parent namespace, as the
// runtime does; the kernel drops it unless PID 1 handles SIGTERM, so it
// reaches the app only when the app is PID 1. After the rewrite it must
// reach the app within a second under every shell; the originals must
// behave as measured (originalDelivers).
//
// It needs root (for the namespaces), unshare, dash, bash and busybox
// (`make test-deps` installs them). All runs go at once, so
// the whole test takes about the one second a lost signal is waited for.
func TestSignalDelivery(t *testing.T) {
	requireShells(t)
	bin := buildSigapp(t)

	type run struct {
		c         signalCase
		shell     string
		rewritten Result
		before    outcome
		after     outcome
		err       error
	}
	var runs []*run
	for _, c := range signalCases {
		rewritten := Rewrite(Input{Command: c.Command, Args: c.Args, Defined: func(name string) bool {
			_, ok := c.Env[name]
			return ok
		}})
		if rewritten.Kind != Kind(c.Kind) {
			t.Errorf("%s: Rewrite = kind %q (%s %s), want %q", c.Name, rewritten.Kind, rewritten.Reason, rewritten.Detail, Kind(c.Kind))
			continue
		}
		shells := c.Shells
		if shells == nil {
			shells = shellOrder
		}
		for _, shell := range shells {
			runs = append(runs, &run{c: c, shell: shell, rewritten: rewritten})
		}
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			r.before, r.err = runAsPID1(t, bin, r.shell, r.c.Command, r.c.Args, r.c.Env)
			if r.err == nil {
				r.after, r.err = runAsPID1(t, bin, r.shell, r.rewritten.Command, r.rewritten.Args, r.c.Env)
			}
		})
	}
	wg.Wait()

	table := map[string]string{} // case|shell → outcomes
	for _, r := range runs {
		t.Run(r.c.Name+"/"+r.shell, func(t *testing.T) {
			if r.err != nil {
				t.Fatal(r.err)
			}
			table[r.c.Name+"|"+r.shell] = r.before.String() + " → " + r.after.String()
			if !r.after.delivered {
				t.Errorf("rewritten %q %q: SIGTERM did not reach the app (%s)", r.rewritten.Command, r.rewritten.Args, r.after)
			}
			if want := slices.Contains(r.c.OriginalDelivers, r.shell); r.before.delivered != want {
				t.Errorf("original %q %q: delivered=%v, but measured before: %v (%s)", r.c.Command, r.c.Args, r.before.delivered, want, r.before)
			}
			if r.c.Started != "" && r.before.started != r.c.Started {
				t.Errorf("the app started with %s, want %s", r.before.started, r.c.Started)
			}
			if r.before.started != r.after.started {
				t.Errorf("the rewrite changed how the app starts:\n original  %s\n rewritten %s", r.before.started, r.after.started)
			}
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%-34s", "original → rewritten")
	for _, shell := range shellOrder {
		fmt.Fprintf(&b, " | %-20s", shell)
	}
	for _, c := range signalCases {
		fmt.Fprintf(&b, "\n%-34s", c.Name)
		for _, shell := range shellOrder {
			cell, ok := table[c.Name+"|"+shell]
			if !ok {
				cell = "-"
			}
			fmt.Fprintf(&b, " | %-20s", cell)
		}
	}
	t.Log("SIGTERM to PID 1 (TERM: the app got it within 1s; lost(pid N): it did not, the app being PID N)\n" + b.String())
}

// outcome is what one run showed.
type outcome struct {
	delivered bool
	appPID    int    // the app's PID in the namespace; 1 when the shell exec'd it
	started   string // the ready line without the PID
}

func (o outcome) String() string {
	if o.delivered {
		return "TERM"
	}
	return fmt.Sprintf("lost(pid %d)", o.appPID)
}

var readyLine = regexp.MustCompile(`ready pid=(\d+) (.*)`)

// runAsPID1 runs a container command (pod text) the way a node would: the
// kubelet's expansion with env, the shell word replaced by the real shell,
// as PID 1 of a new PID namespace. Once the app is ready it sends SIGTERM to
// that PID 1 and reports whether the app got it within a second. Every
// process it started is dead when it returns.
func runAsPID1(t *testing.T, bin, shell string, command, args []string, env map[string]string) (outcome, error) {
	argv := slices.Concat(command, args)
	for i, w := range argv {
		argv[i] = expandKubelet(w, func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		}).text
	}
	if _, isShell := shellLang[filepath.Base(argv[0])]; isShell {
		argv = slices.Concat(realShells[shell], argv[1:])
	}

	log := filepath.Join(t.TempDir(), "sigapp.log")
	// --kill-child: the namespace dies with unshare, whatever happens to
	// the test.
	cmd := exec.Command("unshare", slices.Concat([]string{"--pid", "--fork", "--mount-proc", "--kill-child"}, argv)...)
	cmd.Dir = bin
	cmd.Env = []string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "SIGAPP_LOG=" + log}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return outcome{}, fmt.Errorf("start %q: %w", cmd.Args, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// Teardown: SIGKILL to the namespace's PID 1 (a signal the parent
	// namespace may force) kills everything in the namespace, and unshare,
	// its parent, reaps it and exits. Killing unshare first would orphan
	// PID 1 to the host's init, which may never reap it. The process group
	// is the fallback.
	nsInit := 0
	defer func() {
		select {
		case <-done:
			return
		default:
		}
		if nsInit > 0 {
			_ = syscall.Kill(nsInit, syscall.SIGKILL)
			select {
			case <-done:
				return
			case <-time.After(5 * time.Second):
			}
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()

	logText := func() string {
		b, _ := os.ReadFile(log)
		return string(b)
	}
	var o outcome
	if !poll(10*time.Second, func() bool { return strings.Contains(logText(), "ready") }) {
		return o, fmt.Errorf("%q: the app never got ready; output:\n%s", cmd.Args, output.String())
	}
	m := readyLine.FindStringSubmatch(logText())
	o.appPID, _ = strconv.Atoi(m[1])
	o.started = m[2]

	var err error
	if nsInit, err = namespaceInit(cmd.Process.Pid); err != nil {
		return o, err
	}
	if err := syscall.Kill(nsInit, syscall.SIGTERM); err != nil {
		return o, fmt.Errorf("SIGTERM to PID 1 (%d): %w", nsInit, err)
	}
	o.delivered = poll(time.Second, func() bool { return strings.Contains(logText(), "got SIGTERM") })
	return o, nil
}

// namespaceInit returns the host PID of the process unshare forked, which
// is PID 1 of the new namespace.
func namespaceInit(unshare int) (int, error) {
	children := fmt.Sprintf("/proc/%d/task/%d/children", unshare, unshare)
	var pid int
	if !poll(5*time.Second, func() bool {
		b, err := os.ReadFile(children)
		if err != nil {
			return false
		}
		fields := strings.Fields(string(b))
		if len(fields) != 1 {
			return false
		}
		pid, err = strconv.Atoi(fields[0])
		return err == nil
	}) {
		return 0, fmt.Errorf("no child of unshare (%d) in %s", unshare, children)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	if !nsPIDLine.Match(status) {
		return 0, fmt.Errorf("process %d is not PID 1 of a child namespace:\n%s", pid, status)
	}
	return pid, nil
}

var nsPIDLine = regexp.MustCompile(`(?m)^NSpid:\s+\d+\s+1$`)

func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// requireShells fails the test unless everything the PID 1 proof needs is
// there: a skip would hide exactly what this test exists to show. Installing
// is `make test-deps`' job (hack/test-deps.sh), never the test's.
func requireShells(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("TestSignalDelivery needs root: it runs shells as PID 1 of new PID namespaces (unshare --pid --fork --mount-proc)")
	}
	for _, tool := range []string{"unshare", "dash", "bash", "busybox", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("TestSignalDelivery needs %s in PATH: run `make test-deps` (hack/test-deps.sh), or install util-linux, dash, bash and busybox yourself", tool)
		}
	}
}

// buildSigapp builds testdata/sigapp into a temporary directory, as its own
// module so that the build does not depend on the state of the repository's
// go.mod, adds the noshebang script next to it, and returns the directory.
func buildSigapp(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "sigapp", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	mod, bin := t.TempDir(), t.TempDir()
	for name, text := range map[string][]byte{"go.mod": []byte("module sigapp\n\ngo 1.26\n"), "main.go": src} {
		if err := os.WriteFile(filepath.Join(mod, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "sigapp"), ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build sigapp: %v\n%s", err, out)
	}
	// A script without a #! line, which shells run and execve refuses:
	// why a command given by path keeps its shell.
	noshebang := filepath.Join(bin, "noshebang")
	if err := os.WriteFile(noshebang, []byte("exec sigapp \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(noshebang).Run(); !errors.Is(err, syscall.ENOEXEC) {
		t.Fatalf("running %s directly: %v, want ENOEXEC", noshebang, err)
	}
	return bin
}
