package execform

import (
	"slices"
	"strings"
	"testing"
)

// rewriteCase is one row of TestRewrite, also the fuzz seed corpus.
type rewriteCase struct {
	name          string
	command, args []string
	defined       []string // env vars defined for the container
	// The expected result: the new fields and kind, or the reason with the
	// fields unchanged.
	wantCommand, wantArgs []string
	kind                  Kind
	reason                Reason
}

func (c rewriteCase) input() Input {
	return Input{Command: c.command, Args: c.args, Defined: definedSet(c.defined)}
}

func definedSet(names []string) func(string) bool {
	if names == nil {
		return nil
	}
	return func(name string) bool { return slices.Contains(names, name) }
}

func sh(script string, extra ...string) []string {
	return append([]string{"sh", "-c", script}, extra...)
}

func bash(script string) []string {
	return []string{"bash", "-c", script}
}

var rewriteCases = []rewriteCase{
	// KindDirect: the script is one command of literal words.
	{name: "drop/plain", command: sh("bundle exec puma"), wantCommand: []string{"bundle", "exec", "puma"}, kind: KindDirect},
	{name: "drop/absolute shell", command: []string{"/bin/sh", "-c", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/not a path, which may be a script without #!", command: sh("./start.sh --port 1"), wantCommand: sh("exec ./start.sh --port 1"), kind: KindExec},
	{name: "drop/not an absolute path", command: sh("/usr/local/bin/puma"), wantCommand: sh("exec /usr/local/bin/puma"), kind: KindExec},
	{name: "drop/a path to a shell", command: sh("/bin/bash -c puma"), wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/a path to a shell running a file", command: sh("/bin/sh /app/run.sh"), wantCommand: []string{"/bin/sh", "/app/run.sh"}, kind: KindDirect},
	{name: "drop/quotes of literal text", command: sh(`java -jar 'my app.jar' "--name=a b" c\ d`), wantCommand: []string{"java", "-jar", "my app.jar", "--name=a b", "c d"}, kind: KindDirect},
	{name: "drop/escaped glob", command: sh(`find . -name \*.rb`), wantCommand: []string{"find", ".", "-name", "*.rb"}, kind: KindDirect},
	{name: "drop/double-quote escapes", command: sh(`app "a\"b" "c\d"`), wantCommand: []string{"app", `a"b`, `c\d`}, kind: KindDirect},
	{name: "drop/single-quoted dollar stays literal", command: sh(`app '$$HOME' "\$$x"`), wantCommand: []string{"app", "$$HOME", "$$x"}, kind: KindDirect},
	{name: "drop/undefined ref in single quotes", command: sh(`app '$(FOO)'`), wantCommand: []string{"app", "$$(FOO)"}, kind: KindDirect},
	{name: "drop/-ec", command: []string{"sh", "-ec", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/-e -c", command: []string{"dash", "-e", "-c", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/options after -c", command: []string{"ash", "-c", "-u", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/--", command: []string{"sh", "-c", "--", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/script in args", command: []string{"sh", "-c"}, args: []string{"puma -p 3000"}, wantCommand: []string{"puma", "-p", "3000"}, kind: KindDirect},
	{name: "drop/image entrypoint and cmd", command: []string{"/bin/sh", "-c"}, args: []string{"node server.js"}, wantCommand: []string{"node", "server.js"}, kind: KindDirect},
	{name: "drop/all in args", args: sh("puma"), wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/env launcher", command: []string{"/usr/bin/env", "bash", "-c", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/busybox launcher", command: []string{"busybox", "sh", "-c", "puma"}, wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/trailing comment and newline", command: sh("puma # web\n"), wantCommand: []string{"puma"}, kind: KindDirect},
	{name: "drop/nested shells", command: sh(`sh -c 'bash -c "puma -p 1"'`), wantCommand: []string{"puma", "-p", "1"}, kind: KindDirect},
	{name: "drop/nested shell then exec", command: sh(`bash -c 'cd /a && puma'`), wantCommand: bash("cd /a && exec puma"), kind: KindDirect},
	{name: "drop/BASH_ENV irrelevant to sh", command: sh("puma"), defined: []string{"BASH_ENV"}, wantCommand: []string{"puma"}, kind: KindDirect},

	// KindExec: `exec ` spliced into the pod text.
	{name: "exec/after &&", command: sh("cd /app && bundle exec puma"), wantCommand: sh("cd /app && exec bundle exec puma"), kind: KindExec},
	{name: "exec/after && without spaces", command: sh("cd /app&&puma"), wantCommand: sh("cd /app&&exec puma"), kind: KindExec},
	{name: "exec/after ;", command: sh("bin/migrate; puma"), wantCommand: sh("bin/migrate; exec puma"), kind: KindExec},
	{name: "exec/after newline with trailing ; and newlines", command: sh("set -e\nbin/migrate\npuma;\n\n"), wantCommand: sh("set -e\nbin/migrate\nexec puma;\n\n"), kind: KindExec},
	{name: "exec/after ||", command: sh("test -d /x || puma"), wantCommand: sh("test -d /x || exec puma"), kind: KindExec},
	{name: "exec/a && b || c", command: sh("a && b || c"), wantCommand: sh("a && b || exec c"), kind: KindExec},
	{name: "exec/a || b && c", command: sh("a || b && c"), wantCommand: sh("a || b && exec c"), kind: KindExec},
	{name: "exec/after a pipeline", command: bash("a | b; c"), wantCommand: bash("a | b; exec c"), kind: KindExec},
	{name: "exec/VAR prefix", command: sh("FOO=1 puma"), wantCommand: sh("FOO=1 exec puma"), kind: KindExec},
	{name: "exec/VAR prefixes and redirect between", command: sh("A=1 >/dev/null B=$$HOME puma"), wantCommand: sh("A=1 >/dev/null B=$$HOME exec puma"), kind: KindExec},
	{name: "exec/redirections", command: sh("puma >log 2>&1"), wantCommand: sh("exec puma >log 2>&1"), kind: KindExec},
	{name: "exec/leading redirection", command: sh("2>&1 puma"), wantCommand: sh("2>&1 exec puma"), kind: KindExec},
	{name: "exec/here-doc on target", command: sh("cat <<EOF\nhi\nEOF\n"), wantCommand: sh("exec cat <<EOF\nhi\nEOF\n"), kind: KindExec},
	{name: "exec/here-doc before target", command: sh("cat >/tmp/c <<'EOF'\nx: $y\nEOF\npuma -C /tmp/c"), wantCommand: sh("cat >/tmp/c <<'EOF'\nx: $y\nEOF\nexec puma -C /tmp/c"), kind: KindExec},
	{name: "exec/comment after target", command: sh("cd /a && puma # serve\n# end\n"), wantCommand: sh("cd /a && exec puma # serve\n# end\n"), kind: KindExec},
	{name: "exec/-o pipefail under bash", command: []string{"bash", "-o", "pipefail", "-c", "a | b && puma"}, wantCommand: []string{"bash", "-o", "pipefail", "-c", "a | b && exec puma"}, kind: KindExec},
	{name: "exec/-eo pipefail", command: []string{"bash", "-eo", "pipefail", "-c", "puma"}, wantCommand: []string{"bash", "-eo", "pipefail", "-c", "exec puma"}, kind: KindExec},
	{name: "exec/+e", command: []string{"sh", "+e", "-c", "false; puma"}, wantCommand: []string{"sh", "+e", "-c", "false; exec puma"}, kind: KindExec},
	{name: "exec/login shell keeps shell", command: []string{"bash", "-lc", "puma"}, wantCommand: []string{"bash", "-lc", "exec puma"}, kind: KindExec},
	{name: "exec/--login keeps shell", command: []string{"bash", "--login", "-c", "puma"}, wantCommand: []string{"bash", "--login", "-c", "exec puma"}, kind: KindExec},
	{name: "exec/-x keeps shell", command: []string{"sh", "-xc", "puma"}, wantCommand: []string{"sh", "-xc", "exec puma"}, kind: KindExec},
	{name: "exec/BASH_ENV keeps bash", command: bash("puma"), defined: []string{"BASH_ENV"}, wantCommand: bash("exec puma"), kind: KindExec},
	{name: "exec/$0 words keep shell", command: sh("puma", "sh"), wantCommand: sh("exec puma", "sh"), kind: KindExec},
	{name: "exec/script in args with $0 words", command: []string{"sh", "-c"}, args: []string{`puma "$@"`, "sh", "-p", "3000"}, wantCommand: []string{"sh", "-c"}, wantArgs: []string{`exec puma "$@"`, "sh", "-p", "3000"}, kind: KindExec},
	{name: "exec/script in command, $0 in args", command: sh(`puma "$1"`), args: []string{"sh", "x"}, wantCommand: sh(`exec puma "$1"`), wantArgs: []string{"sh", "x"}, kind: KindExec},
	{name: "exec/$$ escapes", command: sh("cd $$HOME && $$HOME/bin/app --pid $$$$"), wantCommand: sh("cd $$HOME && exec $$HOME/bin/app --pid $$$$"), kind: KindExec},
	{name: "exec/defined ref in args", command: sh("puma -p $(PORT)"), defined: []string{"PORT"}, wantCommand: sh("exec puma -p $(PORT)"), kind: KindExec},
	{name: "exec/defined ref before target", command: sh("cd $(APP_DIR) && puma"), defined: []string{"APP_DIR"}, wantCommand: sh("cd $(APP_DIR) && exec puma"), kind: KindExec},
	{name: "exec/defined ref with a name sh rejects", command: sh("puma -C $(my.conf)"), defined: []string{"my.conf"}, wantCommand: sh("exec puma -C $(my.conf)"), kind: KindExec},
	{name: "exec/undefined ref is command substitution", command: sh("$(APP_CMD) -p 1"), wantCommand: sh("exec $(APP_CMD) -p 1"), kind: KindExec},
	{name: "exec/shell variable as command", command: sh(`exec 2>&1; "$APP" serve`), wantCommand: sh(`exec 2>&1; exec "$APP" serve`), kind: KindExec},
	{name: "exec/glob keeps shell", command: sh("app /etc/*.conf"), wantCommand: sh("exec app /etc/*.conf"), kind: KindExec},
	{name: "exec/tilde keeps shell", command: sh("app ~/x"), wantCommand: sh("exec app ~/x"), kind: KindExec},
	{name: "exec/brace keeps shell", command: bash("app {a,b}"), wantCommand: bash("exec app {a,b}"), kind: KindExec},
	{name: "exec/bash syntax under bash", command: bash(`[[ -f .env ]] && source .env; args=(a b); app "${args[@]}"`), wantCommand: bash(`[[ -f .env ]] && source .env; args=(a b); exec app "${args[@]}"`), kind: KindExec},
	{name: "exec/function defined but not the target", command: sh("f() { :; }; f; puma"), wantCommand: sh("f() { :; }; f; exec puma"), kind: KindExec},
	{name: "exec/path to a builtin name", command: sh("cd /; /bin/echo hi"), wantCommand: sh("cd /; exec /bin/echo hi"), kind: KindExec},

	// KindNone: the reasons.
	{name: "none/not a shell", command: []string{"puma", "-c", "x"}, reason: ReasonNotShell},
	{name: "none/python -c", command: []string{"/usr/bin/python3", "-c", "print(1)"}, reason: ReasonNotShell},
	{name: "none/zsh", command: []string{"zsh", "-c", "puma"}, reason: ReasonNotShell},
	{name: "none/empty argv", reason: ReasonNotShell},
	{name: "none/busybox other applet", command: []string{"busybox", "httpd", "-f"}, reason: ReasonNotShell},
	{name: "none/shell from a defined ref", command: []string{"$(SHELL)", "-c", "puma"}, defined: []string{"SHELL"}, reason: ReasonNotShell},
	{name: "none/script file", command: []string{"sh", "/entrypoint.sh"}, reason: ReasonNoScript},
	{name: "none/bare shell", command: []string{"bash"}, reason: ReasonNoScript},
	{name: "none/-c without script", command: []string{"sh", "-c"}, reason: ReasonNoScript},
	{name: "none/-e without -c", command: []string{"sh", "-e", "run.sh"}, reason: ReasonNoScript},
	{name: "none/- ends options", command: []string{"sh", "-", "-c", "puma"}, reason: ReasonNoScript},
	{name: "none/interactive", command: []string{"sh", "-i", "-c", "puma"}, reason: ReasonShellOptions},
	{name: "none/stdin", command: []string{"bash", "-sc", "puma"}, reason: ReasonShellOptions},
	{name: "none/restricted", command: []string{"bash", "-r", "-c", "puma"}, reason: ReasonShellOptions},
	{name: "none/long option on sh", command: []string{"sh", "--login", "-c", "puma"}, reason: ReasonShellOptions},
	{name: "none/unknown bash long option", command: []string{"bash", "--pretty-print", "-c", "puma"}, reason: ReasonShellOptions},
	{name: "none/option from a defined ref", command: []string{"sh", "$(SH_OPTS)", "-c", "puma"}, defined: []string{"SH_OPTS"}, reason: ReasonShellOptions},
	{name: "none/unparseable", command: sh("puma ("), reason: ReasonUnparseable},
	{name: "none/bash syntax under sh", command: sh(`args=(a b); app "${args[@]}"`), reason: ReasonUnparseable},
	{name: "none/function keyword under dash", command: []string{"dash", "-c", "function f { :; }; puma"}, reason: ReasonUnparseable},
	{name: "none/trap", command: sh("trap 'echo bye' TERM; puma"), reason: ReasonTrap},
	{name: "none/trap in a function", command: sh("f() { trap '' INT; }; f; puma"), reason: ReasonTrap},
	{name: "none/background job", command: sh("sidecar & puma"), reason: ReasonBackground},
	{name: "none/background target", command: sh("puma &"), reason: ReasonBackground},
	{name: "none/background in a subshell", command: sh("(worker &); puma"), reason: ReasonBackground},
	{name: "none/&> under sh", command: sh("puma &>log"), reason: ReasonUnparseable}, // dash: `puma &` then `>log`
	{name: "none/coprocess", command: bash("coproc worker; puma"), reason: ReasonCoprocess},
	{name: "none/alias", command: sh("alias p='puma -p 1'\np"), reason: ReasonAlias},
	{name: "none/pipeline", command: sh("puma | tee /log"), reason: ReasonPipeline},
	{name: "none/pipeline after &&", command: sh("cd / && puma 2>&1 | logger"), reason: ReasonPipeline},
	{name: "none/if", command: sh("if [ -f x ]; then puma; fi"), reason: ReasonCompound},
	{name: "none/block", command: sh("{ puma; }"), reason: ReasonCompound},
	{name: "none/subshell", command: sh("(cd /app && puma)"), reason: ReasonCompound},
	{name: "none/while", command: sh("while :; do puma; done"), reason: ReasonCompound},
	{name: "none/for", command: sh("for i in 1 2; do w $i; done"), reason: ReasonCompound},
	{name: "none/case", command: sh(`case "$1" in *) puma;; esac`), reason: ReasonCompound},
	{name: "none/function declaration last", command: sh("f() { puma; }"), reason: ReasonCompound},
	{name: "none/[[ ]] under bash", command: bash("puma; [[ -f x ]]"), reason: ReasonCompound},
	{name: "none/arithmetic", command: bash("((n = 1))"), reason: ReasonCompound},
	{name: "none/time under bash", command: bash("time puma"), reason: ReasonCompound},
	{name: "none/negated", command: sh("! puma"), reason: ReasonNegated},
	{name: "none/negated after &&", command: sh("cd / && ! puma"), reason: ReasonNegated},
	{name: "none/cd", command: sh("cd /app"), reason: ReasonBuiltin},
	{name: "none/exit", command: sh("puma; exit 0"), reason: ReasonBuiltin},
	{name: "none/wait", command: sh("puma; wait"), reason: ReasonBuiltin},
	{name: "none/colon", command: sh("puma; :"), reason: ReasonBuiltin},
	{name: "none/true after ||", command: sh("puma || true"), reason: ReasonBuiltin},
	{name: "none/echo", command: sh("echo hello"), reason: ReasonBuiltin},
	{name: "none/quoted builtin", command: sh("'cd' /app"), reason: ReasonBuiltin},
	{name: "none/dot", command: sh(". /etc/profile"), reason: ReasonBuiltin},
	{name: "none/source", command: bash("source /etc/profile"), reason: ReasonBuiltin},
	{name: "none/eval", command: sh(`eval "$CMD"`), reason: ReasonBuiltin},
	{name: "none/export under sh", command: sh("export A=1"), reason: ReasonBuiltin},
	{name: "none/export under bash", command: bash("export A=1"), reason: ReasonBuiltin},
	{name: "none/let", command: bash("let n=1"), reason: ReasonBuiltin},
	{name: "none/[[ under sh", command: sh("[[ -f x ]]"), reason: ReasonBuiltin},
	{name: "none/time under sh", command: sh("time puma"), reason: ReasonBuiltin},
	{name: "none/exec without command", command: sh("puma; exec >/dev/null"), reason: ReasonBuiltin},
	{name: "none/script function", command: sh("serve() { puma; }; serve"), reason: ReasonFunction},
	{name: "none/bash function keyword", command: bash("function serve { puma; }; serve -p 1"), reason: ReasonFunction},
	{name: "none/dynamic command", command: sh("cd /app && $(APP_CMD) -p 1"), defined: []string{"APP_CMD"}, reason: ReasonDynamicCommand},
	{name: "none/dynamic command part", command: sh("$(BIN_DIR)/puma"), defined: []string{"BIN_DIR"}, reason: ReasonDynamicCommand},
	{name: "none/assignment last", command: sh("puma; FOO=1"), reason: ReasonNoCommand},
	{name: "none/redirect last", command: sh("puma; >/tmp/done"), reason: ReasonNoCommand},
	{name: "none/already exec", command: sh("exec puma"), reason: ReasonAlreadyExec},
	{name: "none/already exec after &&", command: sh("cd /app && exec bundle exec puma"), reason: ReasonAlreadyExec},
	{name: "none/already exec with VAR", command: sh("FOO=1 exec puma"), reason: ReasonAlreadyExec},
	{name: "none/empty script", command: sh(""), reason: ReasonEmpty},
	{name: "none/only comments", command: sh("  \n# nothing\n"), reason: ReasonEmpty},
}

func TestRewrite(t *testing.T) {
	t.Parallel()
	for _, c := range rewriteCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := Rewrite(c.input())
			if got.Kind != c.kind || got.Reason != c.reason {
				t.Fatalf("Rewrite(%q, %q) = kind %q reason %q (%s), want kind %q reason %q",
					c.command, c.args, got.Kind, got.Reason, got.Detail, c.kind, c.reason)
			}
			wantCommand, wantArgs := c.wantCommand, c.wantArgs
			if c.kind == KindNone {
				wantCommand, wantArgs = c.command, c.args
			}
			if !slices.Equal(got.Command, wantCommand) || !slices.Equal(got.Args, wantArgs) {
				t.Errorf("Rewrite(%q, %q) = %q, %q; want %q, %q", c.command, c.args, got.Command, got.Args, wantCommand, wantArgs)
			}
			if got.Detail == "" {
				t.Errorf("Rewrite(%q, %q) has no detail", c.command, c.args)
			}
			checkInvariants(t, c.input(), got)
		})
	}
}

// TestRewriteCoversEveryReason keeps the table honest: each Kind and Reason
// the package declares appears in it.
func TestRewriteCoversEveryReason(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range rewriteCases {
		seen[string(c.kind)+"/"+string(c.reason)] = true
	}
	for _, want := range []string{"drop-shell/", "exec/"} {
		if !seen[want] {
			t.Errorf("no case for kind %q", want)
		}
	}
	for _, r := range allReasons {
		if !seen["/"+string(r)] {
			t.Errorf("no case for reason %q", r)
		}
	}
}

var allReasons = []Reason{
	ReasonNotShell, ReasonNoScript, ReasonShellOptions, ReasonUnparseable, ReasonTrap,
	ReasonBackground, ReasonCoprocess, ReasonAlias, ReasonPipeline, ReasonCompound,
	ReasonNegated, ReasonBuiltin, ReasonFunction, ReasonDynamicCommand, ReasonNoCommand,
	ReasonAlreadyExec, ReasonEmpty,
}

func TestReasonWarn(t *testing.T) {
	t.Parallel()
	for _, r := range allReasons {
		want := r != ReasonNotShell && r != ReasonAlreadyExec
		if r.Warn() != want {
			t.Errorf("%q.Warn() = %v, want %v", r, r.Warn(), want)
		}
		if strings.ToLower(string(r)) != string(r) || strings.ContainsAny(string(r), " _") {
			t.Errorf("reason %q is not kebab-case", r)
		}
	}
	if Reason("").Warn() {
		t.Error(`Reason("").Warn() = true`)
	}
}

// checkInvariants asserts what holds for every input: KindNone returns the
// input's fields untouched with a reason; a rewrite has no reason, a
// rewritten script analyzes as already-exec (so it re-parses), and a second
// Rewrite changes nothing.
func checkInvariants(t *testing.T, in Input, got Result) {
	t.Helper()
	if got.Detail == selfCheckFailed {
		t.Fatalf("Rewrite(%q, %q): %s", in.Command, in.Args, got.Detail)
	}
	if got.Kind == KindNone {
		if got.Reason == "" {
			t.Fatalf("Rewrite(%q, %q): KindNone without a reason", in.Command, in.Args)
		}
		if !sameSlice(got.Command, in.Command) || !sameSlice(got.Args, in.Args) {
			t.Fatalf("Rewrite(%q, %q): KindNone changed the fields to %q, %q", in.Command, in.Args, got.Command, got.Args)
		}
		return
	}
	if got.Reason != "" {
		t.Fatalf("Rewrite(%q, %q): kind %q with reason %q", in.Command, in.Args, got.Kind, got.Reason)
	}
	if got.Kind == KindExec && !oneSplice(slices.Concat(in.Command, in.Args), slices.Concat(got.Command, got.Args)) {
		t.Fatalf("Rewrite(%q, %q) = %q, %q: not one `exec ` spliced in", in.Command, in.Args, got.Command, got.Args)
	}
	if got.Kind == KindDirect && got.Args != nil {
		t.Fatalf("Rewrite(%q, %q): drop-shell kept args %q", in.Command, in.Args, got.Args)
	}
	again := Rewrite(Input{Command: got.Command, Args: got.Args, Defined: in.Defined})
	if again.Kind != KindNone || !slices.Equal(again.Command, got.Command) || !slices.Equal(again.Args, got.Args) {
		t.Fatalf("Rewrite is not idempotent on %q, %q: first %q, %q; second %q, %q (kind %q)",
			in.Command, in.Args, got.Command, got.Args, again.Command, again.Args, again.Kind)
	}
	if got.Kind == KindExec && again.Reason != ReasonAlreadyExec {
		t.Fatalf("Rewrite(%q, %q) = %q, %q, which analyzes as %q (%s), not already-exec",
			in.Command, in.Args, got.Command, got.Args, again.Reason, again.Detail)
	}
}

// oneSplice reports whether after is before with "exec " inserted once.
func oneSplice(before, after []string) bool {
	if len(before) != len(after) {
		return false
	}
	changed := 0
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		changed++
		a := after[i]
		spliced := false
		for j := 0; j+len("exec ") <= len(a); j++ {
			if a[j:j+len("exec ")] == "exec " && a[:j]+a[j+len("exec "):] == before[i] {
				spliced = true
				break
			}
		}
		if !spliced {
			return false
		}
	}
	return changed == 1
}

// sameSlice reports whether a and b are the same slice, not only equal.
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0]) && (a == nil) == (b == nil)
}

func TestExpandKubelet(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "alpha", "B": "", "my.var": "dotted"}
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "alpha"},
		{"x$(A)y$(A)", "xalphayalpha"},
		{"$(B)", ""},
		{"$(my.var)", "dotted"},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$$", "$"},
		{"$$(A)", "$(A)"},
		{"$$$(A)", "$alpha"},
		{"$$$$", "$$"},
		{"$", "$"},
		{"a$", "a$"},
		{"$x", "$x"},
		{"${A}", "${A}"},
		{"$(", "$("},
		{"$(A", "$(A"},
		{"$((A)", "$((A)"},
		{"$(echo (a))", "$(echo (a))"},
		{"$é", "$é"},
		{"$\xff", "$\uFFFD"},
		{"$)", "$)"},
	} {
		got := expandKubelet(c.in, lookup)
		if got.text != c.want {
			t.Errorf("expandKubelet(%q) = %q, want %q", c.in, got.text, c.want)
		}
		if got.origin == nil && (got.text != c.in || strings.Contains(c.in, "$")) {
			t.Errorf("expandKubelet(%q): no origin map, but the text %q is not the input or holds a $", c.in, got.text)
		} else if got.origin != nil && (len(got.origin) != len(got.text)+1 || got.origin[len(got.text)] != len(c.in)) {
			t.Errorf("expandKubelet(%q): origin %v does not cover the text", c.in, got.origin)
		}
	}
}

func TestExpandKubeletOrigin(t *testing.T) {
	t.Parallel()
	pod := "cd $$HOME && $(APP) -p $(PORT)"
	v := viewForShell(pod, definedSet([]string{"APP"}))
	if want := "cd $HOME && " + refPlaceholder + " -p $(PORT)"; v.text != want {
		t.Fatalf("view = %q, want %q", v.text, want)
	}
	for _, c := range []struct{ text, pod string }{
		{"$HOME", "$$HOME"}, {refPlaceholder, "$(APP)"}, {"-p", "-p"}, {"$(PORT)", "$(PORT)"},
	} {
		at := strings.Index(v.text, c.text)
		if got := pod[v.pos(at):]; !strings.HasPrefix(got, c.pod) {
			t.Errorf("%q maps to pod text %q, want it to start with %q", c.text, got, c.pod)
		}
	}
	at := strings.Index(v.text, refPlaceholder)
	if !v.hasRef(at, at+1) || v.hasRef(0, at) {
		t.Errorf("hasRef does not match the reference span %v", v.refs)
	}
}

func TestEscapeForKubelet(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "$HOME", "$(date)", "$$", "a$b$", "$(A)"} {
		esc := EscapeForKubelet(s)
		if got := expandKubelet(esc, func(string) (string, bool) { return "X", true }).text; got != s {
			t.Errorf("kubelet(EscapeForKubelet(%q)) = %q", s, got)
		}
	}
}
