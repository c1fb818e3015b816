package admissionpolicy

import (
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/execform"
	"github.com/podgrace/podgrace/pkg/policy"
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
// TestExecPlan evaluates it against Classify. The MutatingAdmissionPolicy
// applies it to the containers the webhook would rewrite (execTarget), the
// exec-form ValidatingAdmissionPolicy names the execOther ones.
func execPlan(c string) string {
	list := func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = lit(x)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	wrappers := list(execform.ShapeWrappers())
	return sub(`cel.bind(cmd, {c}.?command.orValue([]), cel.bind(argv, cmd + {c}.?args.orValue([]),
  cel.bind(base, argv.map(a, a.find(r'[^/]*$')),
  cmd.size() == 0 || !(base[0] in {shells} || base[0] in {wrappers} && argv.size() > 1 && base[1] in {shells}) ? [{none}] :
  !(argv.size() == 3 && argv[1] == '-c' && base[0] in {shells} && !argv[2].matches(r'^[-+]')) ? [{other}] :
  cel.bind(s, argv[2],
    !s.matches({words}) && !s.matches({chain}) ? [{other}] :
    cel.bind(firsts, s.findAll({firsts}).map(f, f.find({tail})),
      firsts.exists(n, n in {refused} || n.find(r'[^/]*$') in {refused}) || firsts[firsts.size() - 1] in {builtins} ? [{other}] :
      s.matches({words}) && !firsts[0].contains('/') &&
        (base[0] != 'bash' || !({c}.?envFrom.orValue([]).size() > 0 || {c}.?env.orValue([]).exists(e, e.name == {bashEnv}))) ?
        [{direct}] + s.findAll(r'[^ \t\n]+') :
      cel.bind(at, s.lastIndexOf('&&') < 0 ? 0 : s.lastIndexOf('&&') + 2,
        cel.bind(sp, s.substring(0, at + s.substring(at).find(r'^[ \t\n]*').size()) + 'exec ' + s.substring(at + s.substring(at).find(r'^[ \t\n]*').size()),
          cmd.size() == 3 ? [{splice}, 'command', string(cmd[0]), string(cmd[1]), sp] :
          cmd.size() == 2 ? [{splice}, 'args', sp] : [{splice}, 'args', '-c', sp])))))))`,
		"c", c, "shells", list(execform.ShapeShells()), "wrappers", wrappers, "refused", list(execform.ShapeRefusedFirst()),
		"builtins", list(execform.ShapeBuiltins()), "words", raw(execform.ShapeWordsRE), "chain", raw(execform.ShapeChainRE),
		"firsts", raw(execform.ShapeFirstsRE), "bashEnv", lit(execform.BashEnv), "tail", raw(execform.ShapeNameRE+`+$`),
		"none", lit(execNone), "other", lit(execOther), "direct", lit(execDirect), "splice", lit(execSplice))
}

// execSwitch parses an exec-form value (policy.ParseSwitch) in CEL: 1, 0 or -2.
func execSwitch(x string) string { return parseBool(x, policy.SwitchOn, policy.SwitchOff) }

// podExecVariable is the pod's exec-form setting as policy.Resolve takes
// it (pod annotation > namespace annotation > cluster config), 1 or 0; a
// compiled-in setting that is neither true nor false counts as the default.
func podExecVariable(s Settings) variable {
	set := "'" + s["execForm"] + "'"
	key := lit(policy.AnnotationExecForm)
	return variable{"podExec", sub(`cel.bind(c, ({v} == 'true' ? 1 : {v} == 'false' ? 0 : {def}),
  cel.bind(n, {ns}, cel.bind(p, {pod}, p >= 0 ? p : n >= 0 ? n : c)))`,
		"v", set, "def", map[bool]string{true: "1", false: "0"}[policy.Default().ExecForm],
		"ns", lookup(v("nsAnn"), key, execSwitch), "pod", lookup(v("ann"), key, execSwitch))}
}

// execTarget says in CEL whether the webhook would try the exec-form
// rewrite on the container expression c (inject.Mutate): selected by the
// containers annotation, not a listed sidecar, exec-form on at its level
// (the per-container key over variables.podExec). It needs the variables
// selValid, selRaw and sidecars.
func execTarget(c string) string {
	return sub(`((!variables.selValid || {c}.name in variables.selRaw) && !({c}.name in variables.sidecars) &&
  cel.bind(k, {own}, k >= 0 ? k == 1 : variables.podExec == 1))`,
		"c", c, "own", lookup(v("ann"), contAnn(c+".name", policy.AnnotationExecForm), execSwitch))
}

// execPlans is, for each container of the list expression list, its
// execPlan when it is a target and [execNone] otherwise.
func execPlans(list string) string {
	return sub(`{list}.map(c, {target} ? {plan} : [{none}])`, "list", list, "target", execTarget("c"), "plan", execPlan("c"), "none", lit(execNone))
}

// execPatches are the JSON patch operations of the rewrite for the
// containers of list (a variable holding new containers) in field
// (containers or initContainers) whose plans are in plans and names in
// names: the new command or args, and args removed when the shell is
// dropped (inject.rewriteShellForm).
func execPatches(list, field, plans, names string) string {
	return sub(`{list}.filter(c, {plans}[{names}.indexOf(c.name)][0] in [{direct}, {splice}]).map(c,
    cel.bind(p, {plans}[{names}.indexOf(c.name)],
    cel.bind(i, {base} + string(object.spec.{field}.map(x, x.name).indexOf(c.name)) + '/',
      p[0] == {direct} ?
        [JSONPatch{op: 'add', path: i + {command}, value: p.slice(1, p.size())}] +
          (c.?args.orValue([]).size() > 0 ? [JSONPatch{op: 'remove', path: i + {args}}] : []) :
        [JSONPatch{op: 'add', path: i + p[1], value: p.slice(2, p.size())}]))).flatten()`,
		"list", list, "field", field, "plans", plans, "names", names, "direct", lit(execDirect), "splice", lit(execSplice),
		"base", lit("/spec/"+field+"/"), "command", lit("command"), "args", lit("args"))
}

// execRecord is the status entry's exec-form field for a plan p: what the
// webhook records for the same rewrite.
func execRecord(p string) string {
	return sub(`({p}[0] in [{direct}, {splice}] ? {f} + {p}[0] + '"' : '')`, "p", p, "direct", lit(execDirect), "splice", lit(execSplice),
		"f", lit(","+field("execForm")+`"`))
}

// execWarnVariables name the containers whose shell form the policy leaves
// (execOther) and that no status record says was handled (the mutating
// policy records every rewrite it makes; the webhook or `podgrace inject`
// record what they did, or why not, in execForm or execFormSkipped).
func execWarnVariables(s Settings) []variable {
	vars := commonVariables()
	return append(vars,
		variable{"sidecars", "'" + s["sidecars"] + "'" + `.split(',').map(s, s.trim()).filter(s, s != '')`},
		podExecVariable(s),
		variable{"handled", sub(`{k} in variables.ann ? variables.ann[{k}].findAll({entry}).filter(e, e.contains({ef})).map(e, e.find({name})).map(n, n.substring({n}, n.size() - 1)) : []`,
			"k", lit(policy.AnnotationStatus), "entry", raw(`\{`+field("name")+`"[a-z0-9-]{1,63}"[^{}]*\}`),
			"ef", lit(`"execForm`), "name", raw(field("name")+`"[a-z0-9-]{1,63}"`), "n", strconv.Itoa(len(field("name"))+1))},
		variable{"left", sub(`(object.spec.containers + object.spec.?initContainers.orValue([]).filter(c, c.?restartPolicy.orValue('') == {always}))
  .filter(c, !(c.name in variables.handled) && {target} && {plan}[0] == {other}).map(c, c.name)`,
			"always", lit(string(corev1.ContainerRestartPolicyAlways)), "target", execTarget("c"), "plan", execPlan("c"), "other", lit(execOther))},
	)
}

// ExecFormWarning is the warning of the exec-form ValidatingAdmissionPolicy
// after the container names.
const ExecFormWarning = "shell form not rewritten by the policy; `podgrace inject` shows what the webhook does"

// execFormMatch is the exec-form warning policy's match condition: a pod
// with no container whose command starts with a shell or a wrapper (most
// pods) skips its validation.
func execFormMatch() admissionregistrationv1.MatchCondition {
	names := "[" + strings.Join(func() []string {
		var q []string
		for _, n := range slices.Concat(execform.ShapeShells(), execform.ShapeWrappers()) {
			q = append(q, lit(n))
		}
		return q
	}(), ", ") + "]"
	has := sub(`.exists(c, c.?command.orValue([]).size() > 0 && c.command[0].find(r'[^/]*$') in {names})`, "names", names)
	return admissionregistrationv1.MatchCondition{Name: "has-a-shell-command",
		Expression: "object.spec.containers" + has + " || object.spec.?initContainers.orValue([])" + has}
}
