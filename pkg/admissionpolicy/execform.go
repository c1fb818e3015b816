package admissionpolicy

import (
	"strings"

	"github.com/podgrace/podgrace/pkg/execform"
)

// Exec-form results of execPlan, its first element.
const (
	execNone   = ""      // not a shell wrapper: nothing to say
	execOther  = "other" // a shell wrapper the CEL cannot reproduce: warned about
	execDirect = string(execform.KindDirect)
	execSplice = string(execform.KindExec)
)

// execPlan is execform.Classify in CEL, for the container expression c: a
// list of strings whose first element says what the webhook would do and
// the CEL can reproduce exactly (pkg/execform's shapes, with its patterns
// and word lists):
//
//	[execNone]                        not a shell wrapper
//	[execOther]                       a shell wrapper of another shape
//	[execDirect, word…]               drop the shell: command = the words, args unset
//	[execSplice, "command"|"args", v…] `exec ` spliced: the field's new value
//
// TestExecPlan evaluates it against Classify. The policies do not use it
// yet (docs/operate/policy.md).
func execPlan(c string) string {
	list := func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = lit(x)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	wrappers := list([]string{"env", "busybox"})
	return sub(`cel.bind(cmd, {c}.?command.orValue([]), cel.bind(argv, cmd + {c}.?args.orValue([]),
  cel.bind(base, argv.map(a, a.find(r'[^/]*$')),
  cmd.size() == 0 || !(base[0] in {shells} || base[0] in {wrappers} && argv.size() > 1 && base[1] in {shells}) ? [{none}] :
  !(argv.size() == 3 && argv[1] == '-c' && base[0] in {shells} && !argv[2].matches(r'^[-+]')) ? [{other}] :
  cel.bind(s, argv[2],
    !s.matches({words}) && !s.matches({chain}) ? [{other}] :
    cel.bind(firsts, s.findAll({firsts}).map(f, f.find({tail})),
      firsts.exists(n, n in {refused} || n.find(r'[^/]*$') in {refused}) || firsts[firsts.size() - 1] in {builtins} ? [{other}] :
      s.matches({words}) && !firsts[0].contains('/') &&
        (base[0] != 'bash' || !({c}.?envFrom.orValue([]).size() > 0 || {c}.?env.orValue([]).exists(e, e.name == 'BASH_ENV'))) ?
        [{direct}] + s.findAll(r'[^ \t\n]+') :
      cel.bind(at, s.lastIndexOf('&&') < 0 ? 0 : s.lastIndexOf('&&') + 2,
        cel.bind(sp, s.substring(0, at + s.substring(at).find(r'^[ \t\n]*').size()) + 'exec ' + s.substring(at + s.substring(at).find(r'^[ \t\n]*').size()),
          cmd.size() == 3 ? [{splice}, 'command', cmd[0], cmd[1], sp] :
          cmd.size() == 2 ? [{splice}, 'args', sp] : [{splice}, 'args', '-c', sp])))))))`,
		"c", c, "shells", list(execform.ShapeShells()), "wrappers", wrappers, "refused", list(execform.ShapeRefusedFirst()),
		"builtins", list(execform.ShapeBuiltins()), "words", raw(execform.ShapeWordsRE), "chain", raw(execform.ShapeChainRE),
		"firsts", raw(execform.ShapeFirstsRE), "tail", raw(execform.ShapeNameRE+`+$`),
		"none", lit(execNone), "other", lit(execOther), "direct", lit(execDirect), "splice", lit(execSplice))
}
