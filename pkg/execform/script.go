package execform

import (
	"fmt"
	"strings"
	"sync"

	"mvdan.cc/sh/v3/syntax"
)

// builtins are the commands `exec` cannot replace the shell with: exec looks
// the name up in PATH only, so `exec cd` fails, and `exec echo` fails in an
// image without /bin/echo. It is one list for every shell: POSIX special and
// regular built-ins, the bash and busybox ash additions, echo, printf, test
// and [ which every shell here builds in, and time (a bash keyword, a
// program elsewhere that slim images lack). `exec` is not in the list:
// exec with a command is already what the rewrite wants, and exec without
// one is reported on its own.
var builtins = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Fields(`
		: . break continue eval exit export readonly return set shift times trap unset
		alias bg cd command false fc fg getopts hash jobs kill pwd read true type
		ulimit umask unalias wait
		echo printf test [ [[ time
		source builtin declare typeset local let shopt enable caller compgen complete
		compopt dirs disown help history logout mapfile readarray popd pushd suspend bind`) {
		m[name] = true
	}
	return m
}()

// verdict is what the script analysis decided.
type verdict struct {
	reason Reason
	detail string
	// at is the offset in the pod text where `exec ` goes (reason == "").
	at int
	// words is set when the whole script is one command of literal words:
	// the argv a shell would run, unquoted.
	words []string
}

// parsers holds reusable syntax.Parsers ("a Parser can be reused once it is
// done working") for each grammar of shellLang: each parser holds 2 KB of
// buffers, and a rewrite parses two or three scripts.
var parsers = func() map[syntax.LangVariant]*sync.Pool {
	pools := map[syntax.LangVariant]*sync.Pool{}
	for _, lang := range shellLang {
		pools[lang] = &sync.Pool{New: func() any { return syntax.NewParser(syntax.Variant(lang)) }}
	}
	return pools
}()

// parse parses script in lang, one of shellLang's grammars.
func parse(script string, lang syntax.LangVariant) (*syntax.File, error) {
	pool := parsers[lang]
	p := pool.Get().(*syntax.Parser)
	defer pool.Put(p)
	return p.Parse(strings.NewReader(script), "")
}

// analyzeScript parses a -c script as the shell will see it (docs/design.md §5
// steps 3–7) and finds where `exec ` goes. The checks come in this order so
// that the analysis of a rewritten script stops at already-exec: whole-script
// properties first (they would make any exec wrong), then the shape of the
// target statement, then what its command name refers to.
func analyzeScript(pod string, lang syntax.LangVariant, defined func(string) bool) verdict {
	view := viewForShell(pod, defined)
	file, err := parse(view.text, lang)
	if err != nil {
		return verdict{reason: ReasonUnparseable, detail: fmt.Sprintf("%s script: %v", lang, err)}
	}
	if len(file.Stmts) == 0 {
		return verdict{reason: ReasonEmpty, detail: "the script runs no command"}
	}
	functions, v, bad := scanScript(file)
	if bad {
		return v
	}
	target := lastCommand(file.Stmts[len(file.Stmts)-1])
	call, v := targetCall(target)
	if call == nil {
		return v
	}
	nameWord := call.Args[0]
	start, end := offset(nameWord.Pos()), offset(nameWord.End())
	if view.hasRef(start, end) {
		return verdict{reason: ReasonDynamicCommand, detail: fmt.Sprintf("the command name %q is a kubelet $(NAME) reference, whose value the shell parses as script text", pod[view.pos(start):view.pos(end)])}
	}
	if name, ok := unquote(nameWord, false); ok && !strings.Contains(name, "/") {
		switch {
		case name == "exec" && len(call.Args) > 1:
			return verdict{reason: ReasonAlreadyExec, detail: "the script already ends in exec"}
		case name == "exec":
			return verdict{reason: ReasonBuiltin, detail: "the script ends in exec without a command, which only redirects"}
		case builtins[name]:
			return verdict{reason: ReasonBuiltin, detail: fmt.Sprintf("target %q is a shell builtin", name)}
		case functions[name]:
			return verdict{reason: ReasonFunction, detail: fmt.Sprintf("target %q is a function the script defines", name)}
		}
	}
	out := verdict{at: view.pos(start)}
	if target == file.Stmts[0] && len(file.Stmts) == 1 && len(target.Redirs) == 0 && len(call.Assigns) == 0 {
		out.words = literalWords(call.Args, view)
	}
	return out
}

// scanScript walks the whole script for what makes exec wrong wherever it
// appears: a trap (exec discards the shell that would run it), a background
// job or coprocess (exec would orphan it, or it would become the job the
// signal is meant for), or an alias (non-interactive POSIX shells expand
// them, exec does not). It also collects the names of functions the script
// defines, since `exec f` looks for a program f.
func scanScript(file *syntax.File) (functions map[string]bool, v verdict, bad bool) {
	functions = map[string]bool{}
	syntax.Walk(file, func(node syntax.Node) bool {
		if bad {
			return false
		}
		switch n := node.(type) {
		case *syntax.Stmt:
			switch {
			case n.Background || n.Disown:
				v, bad = verdict{reason: ReasonBackground, detail: "the script starts a background job (&)"}, true
			case n.Coprocess:
				v, bad = verdict{reason: ReasonCoprocess, detail: "the script starts a coprocess"}, true
			}
		case *syntax.CoprocClause:
			v, bad = verdict{reason: ReasonCoprocess, detail: "the script starts a coprocess"}, true
		case *syntax.FuncDecl:
			if n.Name != nil {
				functions[n.Name.Value] = true
			}
		case *syntax.CallExpr:
			if len(n.Args) == 0 {
				break
			}
			switch name, _ := unquote(n.Args[0], false); name {
			case "trap":
				v, bad = verdict{reason: ReasonTrap, detail: "the script sets a trap, which exec would discard"}, true
			case "alias":
				v, bad = verdict{reason: ReasonAlias, detail: "the script defines aliases, which exec does not expand"}, true
			}
		}
		return !bad
	})
	return functions, v, bad
}

// lastCommand follows the right-hand side of && and || from the last
// top-level statement (docs/design.md §5 step 6): in `cd /app && puma` the command
// that runs last, and keeps running, is puma. In `a && b || c` it is c, the
// only place an exec keeps the script's meaning (exec'ing b would skip the
// fallback c).
func lastCommand(stmt *syntax.Stmt) *syntax.Stmt {
	for !stmt.Negated && !stmt.Background && len(stmt.Redirs) == 0 {
		bin, ok := stmt.Cmd.(*syntax.BinaryCmd)
		if !ok || (bin.Op != syntax.AndStmt && bin.Op != syntax.OrStmt) {
			break
		}
		stmt = bin.Y
	}
	return stmt
}

// targetCall returns the simple command exec can be spliced into, or the
// reason stmt is not one.
func targetCall(stmt *syntax.Stmt) (*syntax.CallExpr, verdict) {
	if stmt.Negated {
		return nil, verdict{reason: ReasonNegated, detail: "the last command is negated (!), exec would lose the negation"}
	}
	switch cmd := stmt.Cmd.(type) {
	case *syntax.CallExpr:
		if len(cmd.Args) == 0 {
			return nil, verdict{reason: ReasonNoCommand, detail: "the last statement only assigns variables or redirects"}
		}
		return cmd, verdict{}
	case nil:
		return nil, verdict{reason: ReasonNoCommand, detail: "the last statement only redirects"}
	case *syntax.BinaryCmd:
		return nil, verdict{reason: ReasonPipeline, detail: "the last command is a pipeline"}
	case *syntax.DeclClause:
		return nil, verdict{reason: ReasonBuiltin, detail: fmt.Sprintf("target %q is a shell builtin", cmd.Variant.Value)}
	case *syntax.LetClause:
		return nil, verdict{reason: ReasonBuiltin, detail: `target "let" is a shell builtin`}
	default:
		return nil, verdict{reason: ReasonCompound, detail: fmt.Sprintf("the last command is a compound command (%s)", compoundName(cmd))}
	}
}

func compoundName(cmd syntax.Command) string {
	switch cmd.(type) {
	case *syntax.IfClause:
		return "if"
	case *syntax.WhileClause:
		return "while/until"
	case *syntax.ForClause:
		return "for"
	case *syntax.CaseClause:
		return "case"
	case *syntax.Block:
		return "{ }"
	case *syntax.Subshell:
		return "( )"
	case *syntax.FuncDecl:
		return "function definition"
	case *syntax.ArithmCmd:
		return "(( ))"
	case *syntax.TestClause:
		return "[[ ]]"
	case *syntax.TimeClause:
		return "time"
	default:
		return fmt.Sprintf("%T", cmd)
	}
}

// literalWords returns the words as the shell would pass them to the
// program when every one is literal text (docs/design.md §5 step 7), nil otherwise.
// The words are escaped for the kubelet again, since they go back into the
// pod: `'$x'` reached the shell as text and must reach the program the same.
func literalWords(words []*syntax.Word, view kubeletView) []string {
	out := make([]string, 0, len(words))
	for _, w := range words {
		s, ok := unquote(w, true)
		if !ok || view.hasRef(offset(w.Pos()), offset(w.End())) {
			return nil
		}
		out = append(out, EscapeForKubelet(s))
	}
	if out[0] == "" {
		return nil
	}
	return out
}

// unquote returns the value of a word made of literal text and quotes only.
// With strict, unquoted characters the shell would expand (globs, `~`,
// braces, a lone `$`) make the word non-literal too; without it, the result
// is only good for comparing a command name with a builtin's.
func unquote(w *syntax.Word, strict bool) (string, bool) {
	var b strings.Builder
	for _, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			if !unescape(&b, p.Value, strict, "") {
				return "", false
			}
		case *syntax.SglQuoted:
			if p.Dollar {
				return "", false
			}
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			if p.Dollar {
				return "", false
			}
			for _, in := range p.Parts {
				lit, ok := in.(*syntax.Lit)
				if !ok || !unescape(&b, lit.Value, strict, "$`\"\\\n") {
					return "", false
				}
			}
		default:
			return "", false
		}
	}
	return b.String(), true
}

// unescape writes a literal's value with its backslashes resolved: outside
// quotes (escapable == "") a backslash quotes any character; inside double
// quotes only those in escapable, and is kept before the others.
func unescape(b *strings.Builder, s string, strict bool, escapable string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 == len(s):
			return false
		case c == '\\':
			i++
			if escapable != "" && strings.IndexByte(escapable, s[i]) < 0 {
				b.WriteByte('\\')
			}
			if s[i] != '\n' {
				b.WriteByte(s[i])
			}
		case c == '$' || c == '`':
			return false
		case strict && escapable == "" && strings.IndexByte("*?[]~{}", c) >= 0:
			return false
		default:
			b.WriteByte(c)
		}
	}
	return true
}

func offset(p syntax.Pos) int { return int(p.Offset()) }
