// Package execform rewrites a container's shell-form command into exec form,
// so that the SIGTERM the runtime sends to PID 1 reaches the application
// instead of a shell (docs/design.md §5). It splices `exec ` into the text
// the user wrote and never reprints a script; docs/develop/internals.md describes
// how. The package is pure: no I/O, argv in, argv or a reason out.
package execform

import (
	"fmt"
	"slices"
	"strings"
)

// Input is a container's effective argv as the pod text holds it, i.e. what
// the kubelet will expand: `$(NAME)` references and `$$` escapes intact.
// Strings copied from an image config must be escaped ($ → $$) by the caller
// before they are passed here (EscapeForKubelet does that).
type Input struct {
	Command []string // the container's command (or the image Entrypoint, escaped)
	Args    []string // the container's args (or the image Cmd, escaped)
	// Defined reports whether an env var is defined for the container; the
	// kubelet only expands $(NAME) when NAME is defined, otherwise `$(NAME)`
	// reaches the shell literally (where it is a command substitution).
	// nil means no variable is defined.
	Defined func(name string) bool
}

// Kind says what a rewrite did.
type Kind string

// The kinds of rewrite; their values appear in the status annotation.
const (
	KindNone   Kind = ""           // nothing changed
	KindExec   Kind = "exec"       // `exec ` spliced before the target command
	KindDirect Kind = "drop-shell" // the shell was dropped: argv is the literal words
)

// Reason says why a command was left alone. Stable, kebab-case strings: they
// appear in the status annotation, warnings and metric labels.
type Reason string

const (
	// ReasonNotShell means the first word is not sh, bash, dash or ash, also
	// not behind `env` or `busybox`. The normal case; no warning.
	ReasonNotShell Reason = "not-a-shell"
	// ReasonNoScript means a shell without -c (it runs a script file or
	// stdin), or -c without a script word.
	ReasonNoScript Reason = "no-script"
	// ReasonShellOptions means the shell has options the rewrite does not
	// model: -i, -s, bash's -r and --restricted (which forbid exec), unknown
	// options, or an option word that holds a kubelet $(NAME).
	ReasonShellOptions Reason = "shell-options"
	// ReasonUnparseable means the script does not parse in the shell's
	// grammar (bash for bash, POSIX for sh, dash and ash).
	ReasonUnparseable Reason = "unparseable"
	// ReasonTrap means the script sets a trap somewhere; exec would discard
	// it.
	ReasonTrap Reason = "trap"
	// ReasonBackground means the script starts a background job (&)
	// somewhere.
	ReasonBackground Reason = "background-job"
	// ReasonCoprocess means the script starts a coprocess somewhere.
	ReasonCoprocess Reason = "coprocess"
	// ReasonAlias means the script defines aliases, which non-interactive
	// POSIX shells expand and exec does not.
	ReasonAlias Reason = "alias"
	// ReasonPipeline means the target is a pipeline.
	ReasonPipeline Reason = "pipeline"
	// ReasonCompound means the target is if, while, until, for, case,
	// { }, ( ), [[ ]], (( )), bash's time or a function declaration.
	ReasonCompound Reason = "compound-command"
	// ReasonNegated means the target is negated with `!`.
	ReasonNegated Reason = "negated"
	// ReasonBuiltin means the target is a shell builtin (see builtins), or
	// exec without a command.
	ReasonBuiltin Reason = "builtin"
	// ReasonFunction means the target is a function the script defines.
	ReasonFunction Reason = "script-function"
	// ReasonDynamicCommand means the target's command name is a kubelet
	// $(NAME) reference; the kubelet pastes its value into the script text,
	// so it may be a builtin, an assignment or several commands.
	ReasonDynamicCommand Reason = "dynamic-command"
	// ReasonNoCommand means the last statement has no command word, only
	// assignments or redirections (`FOO=1`, `>log`).
	ReasonNoCommand Reason = "no-command"
	// ReasonAlreadyExec means the target already starts with exec. Normal;
	// no warning.
	ReasonAlreadyExec Reason = "already-exec"
	// ReasonEmpty means the script has no command at all.
	ReasonEmpty Reason = "empty-script"
)

// Warn reports whether a command left alone for this reason deserves an
// admission warning: every reason does, except a command that is not a
// shell wrapper or already execs, which are what a healthy pod looks like.
func (r Reason) Warn() bool {
	return r != "" && r != ReasonNotShell && r != ReasonAlreadyExec
}

// Result is the outcome of Rewrite.
type Result struct {
	// Command and Args are the new fields; equal to Input's when Kind ==
	// KindNone. With KindDirect, Args is nil: the container's args must be
	// unset (the image Cmd is not used once command is set).
	Command, Args []string
	Kind          Kind
	Reason        Reason // set iff Kind == KindNone
	Detail        string // short human detail, e.g. `target "cd" is a shell builtin`
}

// selfCheckFailed is the Detail of a splice that did not analyze as
// already-exec afterwards; the fuzz test makes sure it never happens.
const selfCheckFailed = "internal: the spliced script does not analyze as already-exec"

// Rewrite turns a shell-form command into exec form, or says why not.
//
// The element holding the script is edited in place, in Command or Args,
// wherever it sits; `$0 $1 …` words after it are kept. The shell is dropped
// (KindDirect) only when the script is one command of literal words, no
// words follow the script, the shell options cannot matter and the command
// is not a path to a file that may be a script without `#!`; otherwise
// `exec ` is spliced before the target (KindExec), after any `VAR=x`
// prefixes, which every shell then exports to the program.
func Rewrite(in Input) Result {
	argv := slices.Concat(in.Command, in.Args)
	none := func(reason Reason, detail string) Result {
		return Result{Command: in.Command, Args: in.Args, Reason: reason, Detail: detail}
	}
	w, reason, detail := parseWrapper(argv, in.Defined)
	if reason != "" {
		return none(reason, detail)
	}
	script := argv[w.script]
	v := analyzeScript(script, w.lang, in.Defined)
	if v.reason != "" {
		return none(v.reason, v.detail)
	}

	if v.words != nil && w.plain {
		// The command may itself be a shell wrapper (`sh -c "bash -c 'x'"`):
		// it is rewritten too, so that a second pass finds nothing to do.
		inner := Rewrite(Input{Command: v.words, Defined: in.Defined})
		// A command name with a slash names a file of the image, often the
		// user's own script, which may lack a `#!` line: every shell runs
		// such a file itself when execve fails with ENOEXEC, even through
		// its exec builtin, while the container runtime would fail to start
		// it. So the shell stays (with exec) unless the file is a shell;
		// a name found in PATH is taken to be an installed program.
		if !strings.Contains(v.words[0], "/") || inner.Reason != ReasonNotShell {
			out := Result{Command: v.words, Kind: KindDirect, Detail: fmt.Sprintf("dropped %s -c: the script is the single command %q", w.shell, script)}
			if inner.Kind != KindNone {
				out.Command, out.Args = inner.Command, inner.Args
				out.Detail += "; then " + inner.Detail
			}
			return out
		}
	}

	out := Result{Command: slices.Clone(in.Command), Args: slices.Clone(in.Args), Kind: KindExec,
		Detail: fmt.Sprintf("exec put before the last command of the %s script", w.shell)}
	spliced := script[:v.at] + "exec " + script[v.at:]
	if w.script < len(in.Command) {
		out.Command[w.script] = spliced
	} else {
		out.Args[w.script-len(in.Command)] = spliced
	}
	if again := Rewrite(Input{Command: out.Command, Args: out.Args, Defined: in.Defined}); again.Reason != ReasonAlreadyExec {
		return none(ReasonUnparseable, selfCheckFailed)
	}
	return out
}
