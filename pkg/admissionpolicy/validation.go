package admissionpolicy

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// perContainerSuffix is what follows the container name in a per-container key's prefix.
const perContainerSuffix = "." + policy.Prefix

// validationVariables list every invalid or unknown podgrace setting the
// webhook names in a warning (policy.Resolve), as "podgrace: KEY="VALUE" why".
func validationVariables() []variable {
	sleepMsg := `is not a duration, "auto" or "off"`
	vars := commonVariables()
	vars = append(vars, []variable{
		{"resolved", `object.spec.containers.map(c, c.name) + object.spec.?initContainers.orValue([]).filter(c, c.?restartPolicy.orValue('') == ` + lit(string(corev1.ContainerRestartPolicyAlways)) + `).map(c, c.name)`},
		{"known", `object.spec.containers.map(c, c.name) + object.spec.?initContainers.orValue([]).map(c, c.name)`},
	}...)
	var parts []string
	type check struct {
		key   string
		parse func(string) string
		msg   string
	}
	checks := []check{
		{policy.AnnotationPreStopSleep, func(x string) string { return parseSleep(x, "V") }, sleepMsg},
		{policy.AnnotationExecForm, func(x string) string { return parseBool(x, policy.SwitchOn, policy.SwitchOff) }, `is not "on" or "off"`},
		{policy.AnnotationExtendGrace, func(x string) string { return parseBool(x, strconv.FormatBool(true), strconv.FormatBool(false)) }, `is not "true" or "false"`},
	}
	for _, m := range []string{v("nsAnn"), v("ann")} {
		for _, c := range checks {
			parts = append(parts, sub(`({k} in {m} && {p} == -2 ? [{msg}] : [])`, "k", lit(c.key), "m", m,
				"p", c.parse(m+"["+lit(c.key)+"]"), "msg", problem(lit(c.key), m+"["+lit(c.key)+"]", c.msg)))
		}
	}
	ck := lit(policy.AnnotationContainers)
	parts = append(parts,
		sub(`({k} in variables.ann && !variables.selValid ? [{msg}] : [])`, "k", ck, "msg", problem(ck, "variables.ann["+ck+"]", "is not a comma list of container names")),
		sub(`(variables.selValid ? variables.selRaw.filter(n, !(n in variables.known)).map(n, {msg}) : [])`, "msg", problem(ck, "variables.ann["+ck+"]", `names no container "' + n + '"`)),
	)
	// Per-container keys of a resolved container.
	for _, c := range checks[:2] {
		parts = append(parts, sub(`variables.resolved.filter(c, {key} in variables.ann && {p} == -2).map(c, {msg})`,
			"key", contAnn("c", c.key), "p", c.parse("variables.ann["+contAnn("c", c.key)+"]"),
			"msg", problem(contAnn("c", c.key), "variables.ann["+contAnn("c", c.key)+"]", c.msg)))
	}
	pf := lit(policy.Prefix + "/")
	// The levels of each annotation, from policy.Keys: valid on the
	// namespace too, on pods only, and per container.
	var onPodOnly, everywhere, perContainer []string
	for _, k := range policy.Keys {
		switch {
		case k.Label:
		case k.Levels&policy.OnNamespace != 0:
			everywhere = append(everywhere, lit(k.Name))
		case k.Levels&policy.OnPod != 0:
			onPodOnly = append(onPodOnly, lit(k.Name))
		}
		if !k.Label && k.Levels&policy.PerContainer != 0 {
			perContainer = append(perContainer, lit("."+k.Name))
		}
	}
	list := func(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }
	sfx := lit(perContainerSuffix)
	parts = append(parts,
		// Unknown keys on the pod.
		sub(`variables.ann.filter(k, k.startsWith({pf}) && !(k in {all}) && !(k in {pod})).map(k, {msg})`, "pf", pf, "all", list(everywhere), "pod", list(onPodOnly),
			"msg", problem("k", "variables.ann[k]", "is not a podgrace key; ignored")),
		sub(`variables.ann.filter(k, k.contains('/') && k.split('/')[0].endsWith({sfx})).map(k,
  cel.bind(rest, k.substring(k.indexOf('/') - {n}), cel.bind(cn, k.substring(0, k.indexOf('/') - {n}),
    !(rest in {pc}) ? [{notPC}] : !(cn in variables.known) ? [{noC}] : [])))`,
			"sfx", sfx, "n", strconv.Itoa(len(perContainerSuffix)), "pc", list(perContainer),
			"notPC", problem("k", "variables.ann[k]", "is not a per-container podgrace key; ignored"),
			"noC", problem("k", "variables.ann[k]", `names no container \"' + cn + '\"; ignored`)),
		// Keys on the namespace.
		sub(`variables.nsAnn.filter(k, k.startsWith({pf}) && !(k in {all})).map(k, k in {pod} ? {only} : {unknown})`, "pf", pf, "all", list(everywhere), "pod", list(onPodOnly),
			"only", problem("k", "variables.nsAnn[k]", "is only read on pods; ignored"), "unknown", problem("k", "variables.nsAnn[k]", "is not a podgrace key; ignored")),
		sub(`variables.nsAnn.filter(k, k.contains('/') && k.split('/')[0].endsWith({sfx})).map(k, {only})`, "sfx", sfx,
			"only", problem("k", "variables.nsAnn[k]", "is only read on pods; ignored")),
	)
	// The per-container unknown-key check yields a list per key: flatten it.
	for i, p := range parts {
		if strings.Contains(p, "cel.bind(rest") {
			parts[i] = "(" + p + ").map(l, l.size() == 0 ? '' : l[0]).filter(s, s != '')"
		}
	}
	// Most pods carry no podgrace key at all: then there is nothing to check.
	vars = append(vars,
		variable{"anyKey", sub(`variables.ann.exists(k, k.contains({p})) || variables.nsAnn.exists(k, k.contains({p}))`, "p", lit(policy.Prefix+"/"))},
		variable{"problems", "!variables.anyKey ? [] : " + strings.Join(parts, " +\n")})
	return vars
}

// problem is the text of policy.Problem.Denial in CEL: key and value are CEL
// expressions, msg is written into a CEL single-quoted string as is.
func problem(key, value, msg string) string {
	return `'podgrace: ' + ` + key + ` + '=' + strings.quote(` + value + `) + ' ` + msg + `'`
}
