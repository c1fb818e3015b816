package execform

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// shellLang lists the shells whose `-c` scripts are rewritten and the grammar
// each script is parsed with. sh, dash and ash get the POSIX grammar even
// though /bin/sh is bash on some distributions and busybox ash accepts some
// bash extensions: a bash-only construct then fails to parse and the
// command is left alone, which is the safe direction.
var shellLang = map[string]syntax.LangVariant{
	"sh":   syntax.LangPOSIX,
	"dash": syntax.LangPOSIX,
	"ash":  syntax.LangPOSIX,
	"bash": syntax.LangBash,
}

// bashLongOptions are the long options bash accepts before its short ones,
// mapped to whether they take an argument. Others (--restricted, which
// disables exec; --pretty-print, which does not run the script; …) are not
// modeled.
var bashLongOptions = map[string]bool{
	"login":     false,
	"noprofile": false,
	"norc":      false,
	"posix":     false,
	"noediting": false,
	"verbose":   false,
	"debugger":  false,
	"rcfile":    true,
	"init-file": true,
}

// Short options by their effect on the rewrite. plainOptions cannot change
// what a lone literal command does, so the shell may be dropped with them;
// keptOptions are harmless to an exec splice but keep the shell (a login
// profile may set PATH, -x traces, -n runs nothing, -o names an option a
// shell may reject: Debian's dash fails on `-o pipefail`). Anything else
// (-i interactive, -s stdin, -r restricted, unknown letters) is refused.
const (
	plainOptions = "eu"
	keptOptions  = "abCfhmnvxlpBEHkPTt"
)

// wrapper is a recognized `sh -c SCRIPT [$0 [$1…]]` argv.
type wrapper struct {
	shell  string // the shell's basename
	lang   syntax.LangVariant
	script int // index of the script in argv
	// plain is true when nothing but the script would be lost by running
	// the script's command without the shell: only -e/-u options, no $0…
	// words, and for bash no BASH_ENV file to source.
	plain bool
}

// parseWrapper recognizes a shell wrapper in argv (docs/design.md §5 step 2):
// optionally `env` or `busybox` in front, a shell from shellLang, options,
// `-c` among them, and the first operand after the options is the script.
// Like the shells, it lets options follow `-c` (`sh -c -e 'script'`) and
// stops at `--` or `-`. Words are read as the kubelet will pass them; a word
// holding a defined $(NAME) cannot be read, which ends recognition.
func parseWrapper(argv []string, defined func(string) bool) (wrapper, Reason, string) {
	word := func(i int) (string, bool) {
		v := viewForShell(argv[i], defined)
		return v.text, len(v.refs) == 0
	}
	if len(argv) == 0 {
		return wrapper{}, ReasonNotShell, "no command"
	}
	first, ok := word(0)
	if !ok {
		return wrapper{}, ReasonNotShell, fmt.Sprintf("command %q is set by the kubelet", argv[0])
	}
	// `env sh -c …` (a PATH lookup; env's own options and assignments are
	// not modeled) and `busybox sh -c …` (the applet called by name) are
	// the same wrapper one word later.
	at, name := 0, first
	if base := path.Base(first); (base == "env" || base == "busybox") && len(argv) > 1 {
		next, ok := word(1)
		if ok && (base == "env" || next == "sh" || next == "ash") {
			at, name = 1, next
		}
	}
	w := wrapper{shell: path.Base(name)}
	lang, ok := shellLang[w.shell]
	if !ok {
		// The common case for every exec-form command: no fmt on this path.
		return wrapper{}, ReasonNotShell, strconv.Quote(name) + " is not sh, bash, dash or ash"
	}
	w.lang = lang
	w.plain = w.shell != "bash" || defined == nil || !defined("BASH_ENV")

	hasC := false
	i := at + 1
options:
	for ; i < len(argv); i++ {
		// A defined $(NAME) in an option, or making up a whole word where an
		// option may stand, hides what the shell will be given.
		v := viewForShell(argv[i], defined)
		opt := v.text
		if len(v.refs) > 0 && (opt[0] == '-' || opt[0] == '+' || v.refs[0] == [2]int{0, len(opt)}) {
			return wrapper{}, ReasonShellOptions, fmt.Sprintf("option %q is set by the kubelet", argv[i])
		}
		switch {
		case opt == "--" || opt == "-":
			i++
			break options
		case strings.HasPrefix(opt, "--"):
			takesArg, known := bashLongOptions[opt[2:]]
			if w.shell != "bash" || !known {
				return wrapper{}, ReasonShellOptions, fmt.Sprintf("%s option %q is not supported", w.shell, opt)
			}
			w.plain = false
			if takesArg {
				i++
			}
		case len(opt) < 2 || (opt[0] != '-' && opt[0] != '+'):
			break options
		default:
			for _, r := range opt[1:] {
				switch {
				case r == 'c' && opt[0] == '-':
					hasC = true
				case r == 'o' || (r == 'O' && w.shell == "bash"):
					// -o NAME, -O SHOPT: each takes the next word.
					i++
					w.plain = false
				case strings.ContainsRune(plainOptions, r):
				case strings.ContainsRune(keptOptions, r):
					w.plain = false
				default:
					return wrapper{}, ReasonShellOptions, fmt.Sprintf("%s option %q is not supported", w.shell, opt)
				}
			}
		}
	}
	switch {
	case !hasC:
		return wrapper{}, ReasonNoScript, fmt.Sprintf("%s runs without -c (a script file or stdin)", w.shell)
	case i >= len(argv):
		return wrapper{}, ReasonNoScript, fmt.Sprintf("%s -c has no script", w.shell)
	}
	w.script = i
	if i != len(argv)-1 {
		w.plain = false // $0 $1 … words would be lost
	}
	return w, "", ""
}
