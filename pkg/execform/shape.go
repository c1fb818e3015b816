package execform

import (
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Shape is the classification Rewrite's analysis makes of a `SHELL -c
// SCRIPT` argv, narrowed to what a regular expression can recognize: the
// generated admission policy (pkg/admissionpolicy, docs/operate/policy.md) rewrites
// exactly the ShapeWords and ShapeChain commands, with these patterns and
// word lists, and leaves ShapeOther alone. Classify's prediction of the
// result equals Rewrite's for every ShapeWords and ShapeChain argv (the
// tests hold it to that).
type Shape string

const (
	// ShapeWords is one command of literal words.
	ShapeWords Shape = "words"
	// ShapeChain is a chain of such commands joined by &&.
	ShapeChain Shape = "and-chain"
	// ShapeOther is any other argv, shell or not.
	ShapeOther Shape = "other"
)

// The grammar of the shapes. A word is unquoted text of characters no
// shell treats specially; a command's first word has no `=` (it would be
// an assignment). Words are separated by spaces or tabs, commands by &&;
// blank space and newlines may surround the script.
const (
	wordChars     = `[A-Za-z0-9_./:,+%@=-]`
	nameChars     = `[A-Za-z0-9_./:,+%@-]`
	shapeCommand  = nameChars + `+([ \t]+` + wordChars + `+)*`
	ShapeWordsRE  = `^[ \t\n]*` + shapeCommand + `[ \t\n]*$`
	ShapeChainRE  = `^[ \t\n]*` + shapeCommand + `([ \t]*&&[ \t]*` + shapeCommand + `)+[ \t\n]*$`
	ShapeFirstsRE = `(^|&&)[ \t\n]*` + nameChars + `+`
	// ShapeNameRE is the character class of a command's first word.
	ShapeNameRE = nameChars
)

var (
	shapeWords = regexp.MustCompile(ShapeWordsRE)
	shapeChain = regexp.MustCompile(ShapeChainRE)
	shapeFirst = regexp.MustCompile(ShapeFirstsRE)
)

// ShapeShells are the shells whose `-c` script a shape may be (the keys
// of shellLang).
func ShapeShells() []string { return slices.Sorted(maps.Keys(shellLang)) }

// ShapeWrappers are the launchers a shell may stand behind (`env sh -c`,
// `busybox sh -c`): Rewrite looks through them, Classify calls such an
// argv ShapeOther.
func ShapeWrappers() []string { return []string{"env", "busybox"} }

// BashEnv names the file bash sources before a -c script when the variable
// is defined: bash with it defined keeps its shell (`exec ` is spliced).
const BashEnv = "BASH_ENV"

// ShapeRefusedFirst are the first words that make a script ShapeOther
// wherever they start a command, as written or as the base name of a path:
// reserved words, exec, trap and alias (which Rewrite refuses anywhere),
// and the wrappers a command may itself be (a shell, env, busybox), which
// Rewrite rewrites recursively. A script starting with - or + is an
// option word to the shell, not a script.
func ShapeRefusedFirst() []string {
	out := slices.Concat([]string{"exec", "trap", "alias"}, ShapeWrappers(), ShapeShells())
	out = append(out, strings.Fields(`if then else elif fi do done case esac while until for in function select time coproc`)...)
	slices.Sort(out)
	return slices.Compact(out)
}

// ShapeBuiltins are the commands exec cannot run: a script whose last
// command is one is ShapeOther.
func ShapeBuiltins() []string { return slices.Sorted(maps.Keys(builtins)) }

// Classify says which shape in's argv is and, for ShapeWords and
// ShapeChain, what Rewrite makes of it: the argv must be exactly
// [SHELL, -c, SCRIPT] (in command, or split between command and args),
// SHELL a path whose base name is in ShapeShells. A single command of
// literal words drops the shell (KindDirect: the words, args unset) when
// its name has no slash and the shell is plain (bash with BASH_ENV
// defined is not); otherwise, and for a chain, `exec ` goes before the
// last command's first word, in the element that holds the script.
func Classify(in Input) (Shape, Result) {
	none := Result{Command: in.Command, Args: in.Args}
	argv := slices.Concat(in.Command, in.Args)
	if len(in.Command) == 0 || len(argv) != 3 || argv[1] != "-c" || !slices.Contains(ShapeShells(), path.Base(argv[0])) {
		return ShapeOther, none
	}
	script := argv[2]
	if strings.HasPrefix(script, "-") || strings.HasPrefix(script, "+") { // an option word, not the script
		return ShapeOther, none
	}
	var shape Shape
	switch {
	case shapeWords.MatchString(script):
		shape = ShapeWords
	case shapeChain.MatchString(script):
		shape = ShapeChain
	default:
		return ShapeOther, none
	}
	firsts := shapeFirst.FindAllStringIndex(script, -1)
	refused := ShapeRefusedFirst()
	var name string
	at := 0
	for _, f := range firsts {
		text := script[f[0]:f[1]]
		text = strings.TrimLeft(strings.TrimPrefix(text, "&&"), " \t\n")
		if slices.Contains(refused, text) || slices.Contains(refused, path.Base(text)) {
			return ShapeOther, none
		}
		name, at = text, f[1]-len(text)
	}
	if slices.Contains(ShapeBuiltins(), name) {
		return ShapeOther, none
	}
	plain := path.Base(argv[0]) != "bash" || in.Defined == nil || !in.Defined(BashEnv)
	if shape == ShapeWords && plain && !strings.Contains(name, "/") {
		return shape, Result{Command: strings.Fields(script), Kind: KindDirect}
	}
	out := Result{Command: slices.Clone(in.Command), Args: slices.Clone(in.Args), Kind: KindExec}
	spliced := script[:at] + "exec " + script[at:]
	if len(in.Command) == 3 {
		out.Command[2] = spliced
	} else {
		out.Args[2-len(in.Command)] = spliced
	}
	return shape, out
}
