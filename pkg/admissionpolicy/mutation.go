package admissionpolicy

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// variable is one entry of a policy's spec.variables.
type variable struct{ name, expr string }

// v refers to a variable.
func v(name string) string { return "variables." + name }

// contAnn is the per-container key of a pod annotation for the container c.
func contAnn(c, key string) string { return c + ` + ".` + key + `"` }

// commonVariables are shared by the mutating and the validating policy.
func commonVariables() []variable {
	return []variable{
		{"ann", `object.metadata.?annotations.orValue({})`},
		{"nsAnn", `namespaceObject.metadata.?annotations.orValue({})`},
		{"selRaw", sub(`{k} in variables.ann ? variables.ann[{k}].split(',').map(n, n.trim()).filter(n, n != '') : []`, "k", lit(policy.AnnotationContainers))},
		{"selValid", sub(`{k} in variables.ann && variables.selRaw.size() > 0 && variables.selRaw.all(n, n.size() <= {max} && n.matches({dns}))`,
			"k", lit(policy.AnnotationContainers), "dns", raw(dnsLabelRE), "max", strconv.Itoa(validation.DNS1123LabelMaxLength))},
	}
}

// mutationVariables computes the plan of docs/design.md §2 and §4, as
// pkg/inject's placeSleeps does: for each container podgrace's status does
// not list yet, the sleep it gets or why none; then the grace period and the
// status.
func mutationVariables(s Settings) []variable {
	set := func(key string) string { return "'" + s[key] + "'" }
	def := policy.Default()
	sleepKey := lit(policy.AnnotationPreStopSleep)
	egKey := lit(policy.AnnotationExtendGrace)
	vars := commonVariables()
	vars = append(vars, []variable{
		{"T", sub(`int(has(object.spec.terminationGracePeriodSeconds) ? object.spec.terminationGracePeriodSeconds : {d})`, "d", strconv.FormatInt(inject.DefaultGracePeriod, 10))},
		{"rtc", sub(`object.spec.?restartPolicy.orValue({always}) in [{never}, {onFailure}]`,
			"always", lit(string(corev1.RestartPolicyAlways)), "never", lit(string(corev1.RestartPolicyNever)), "onFailure", lit(string(corev1.RestartPolicyOnFailure)))},
		// The cluster config, compiled in (Settings); a value that does not
		// parse counts as 0 (durations) or the default (the rest).
		{"sleepRTC", set("sleepRunToCompletion") + ` == 'true'`},
		{"sidecars", set("sidecars") + `.split(',').map(s, s.trim()).filter(s, s != '')`},
		{"ratio", sub(`{v}.matches({re}) ? double({v}) : {def}`, "v", set("ratio"), "re", raw(ratioRE), "def", strconv.FormatFloat(def.Ratio, 'f', -1, 64))},
		{"minS", durationSetting(set("min"))},
		{"maxS", durationSetting(set("max"))},
		{"budget", durationSetting(set("shutdownBudget"))},
		{"sbDefault", durationSetting(set("sidecarShutdownBudget"))},
		{"cap", durationSetting(set("maxGracePeriod"))},
		{"hook", sub(`{v} == {exec} ? {exec} : {sleep}`, "v", set("hookAction"), "exec", lit(string(policy.HookExec)), "sleep", lit(string(policy.HookSleep)))},
		// extend-grace: cluster < namespace < pod.
		{"extend", sub(`cel.bind(c, {cluster},
  cel.bind(n, {ns}, cel.bind(p, {pod}, p >= 0 ? p == 1 : n >= 0 ? n == 1 : c == 1)))`,
			"cluster", sub(`({v} == 'true' ? 1 : {v} == 'false' ? 0 : {def})`, "v", set("extendGrace"), "def", map[bool]string{true: "1", false: "0"}[def.ExtendGrace]),
			"ns", lookup(v("nsAnn"), egKey, func(x string) string { return parseBool(x, "true", "false") }),
			"pod", lookup(v("ann"), egKey, func(x string) string { return parseBool(x, "true", "false") }))},
		{"clusterSleep", sub(`cel.bind(c, {p}, c == -2 ? -1 : c)`, "p", parseSleep(set("preStopSleep"), "C"))},
		// [value, level]: level 0 cluster, 1 namespace, 2 pod, 3 container.
		{"podSleep", over(over(`[variables.clusterSleep, 0]`, lookup(v("nsAnn"), sleepKey, func(x string) string { return parseSleep(x, "N") }), "1", "N"),
			lookup(v("ann"), sleepKey, func(x string) string { return parseSleep(x, "P") }), "2", "P")},
		// sel: may podgrace act on this container (the containers annotation)?
		{"selected", `object.spec.containers.map(c, c.name) .filter(n, !variables.selValid || n in variables.selRaw)`},
		// The status the policy wrote on an earlier pass (reinvocation).
		{"prev", sub(`{k} in variables.ann && variables.ann[{k}].matches({re}) ? variables.ann[{k}] : ''`, "k", lit(policy.AnnotationStatus), "re", raw(statusRE))},
		{"prevEntries", sub(`variables.prev == '' ? [] : variables.prev.findAll({re})`, "re", raw(`\{`+field("name")+`"[a-z0-9-]{1,63}"[^{}]*\}`))},
		{"prevNames", sub(`variables.prevEntries.map(e, e.find({re})).map(n, n.substring({n}, n.size() - 1))`,
			"re", raw(field("name")+`"[a-z0-9-]{1,63}"`), "n", strconv.Itoa(len(field("name"))+1))},
		{"graceBefore", sub(`variables.prev == '' ? variables.T : int(variables.prev.find({re}).substring({n}))`,
			"re", raw(field("graceBefore")+`[0-9]{1,18}`), "n", strconv.Itoa(len(field("graceBefore"))))},
		// The longest app sleep of earlier passes.
		{"prevApp", sub(`([0] + variables.prevEntries.filter(e, !e.contains({role})).map(e, e.find({re})).filter(x, x != '').map(x, [int(x.substring({n})), variables.T].min())).max()`,
			"role", lit(field("role")), "re", raw(field("preStopSleep")+`[0-9]{1,9}`), "n", strconv.Itoa(len(field("preStopSleep"))))},
		{"newC", `object.spec.containers.filter(c, !(c.name in variables.prevNames))`},
		{"newNames", `variables.newC.map(c, c.name)`},
		// Native sidecars are recorded too: one that a mesh injector adds on
		// reinvocation needs no hook, but its drain joins the grace period.
		{"newNative", sub(`object.spec.?initContainers.orValue([]).filter(c, c.?restartPolicy.orValue('') == {always} && !(c.name in variables.prevNames))`, "always", lit(string(corev1.ContainerRestartPolicyAlways)))},
		// The exec-form rewrite (docs/design.md §5) of the shapes the CEL
		// reproduces exactly: execPlan per new container, aligned with newC
		// and newNative.
		podExecVariable(s),
		{"execPlans", execPlans(v("newC"))},
		{"nativeNames", `variables.newNative.map(c, c.name)`},
		{"nativePlans", execPlans(v("newNative"))},
		{"newNativeServed", `variables.prev != '' && variables.newNative.exists(c, !variables.selValid || c.name in variables.selRaw)`},
		// pre: [want, skip, fixed] per new container, aligned with newC: the
		// sleep it wants (-1: a sidecar's S + B, sized later), why it gets
		// none (an index into skipReasons) and whether a sidecar's own
		// annotation fixed it.
		{"pre", sub(`variables.newC.map(c, !(c.name in variables.selected) ? [0, {notSel}, 0] :
  c.name in variables.sidecars ?
    cel.bind(o, {o},
      o == 0 ? [0, {off}, 0] :
      has(c.lifecycle) && has(c.lifecycle.preStop) ? [0, {existing}, 0] :
      variables.T == 0 ? [0, {zero}, 0] :
      o > 0 ? [o, 0, 1] : [-1, 0, 0]) :
    cel.bind(cs, {cs},
      cs[0] == 0 ? [0, {off}, 0] :
      variables.rtc && !variables.sleepRTC && !(cs[0] > 0 && cs[1] > 0) ? [0, {rtc}, 0] :
      has(c.lifecycle) && has(c.lifecycle.preStop) ? [0, {existing}, 0] :
      variables.T == 0 ? [0, {zero}, 0] :
      [cs[0] > 0 ? cs[0] : {auto}, 0, 0]))`,
			"notSel", skipCode(policy.SkipNotSelected), "off", skipCode(inject.SkipOff), "existing", skipCode(inject.SkipExistingPreStop),
			"zero", skipCode(inject.SkipGraceZero), "rtc", skipCode(inject.SkipRunToCompletion),
			"o", lookup(v("ann"), contAnn("c.name", policy.AnnotationPreStopSleep), func(x string) string { return parseSleep(x, "O") }),
			"cs", over(v("podSleep"), lookup(v("ann"), contAnn("c.name", policy.AnnotationPreStopSleep), func(x string) string { return parseSleep(x, "K") }), "3", "K"),
			"auto", `cel.bind(r, variables.ratio * double(variables.T), r >= double(variables.maxS) ? variables.maxS : r < double(variables.minS) ? variables.minS : int(r))`)},
		{"wantApp", `([0] + variables.newC.filter(c, !(c.name in variables.sidecars)).map(c, int(variables.pre[variables.newNames.indexOf(c.name)][0]))).max()`},
		{"anyWanted", `variables.pre.exists(p, p[0] != 0)`},
		// The sidecars' own sleep hooks (podgrace's of earlier passes too).
		{"ownHook", sub(`([0] + object.spec.containers.filter(c, c.name in variables.sidecars && c.name in variables.selected).map(c, {own})).max()`, "own", ownSleep("c"))},
		{"hasSidecar", `object.spec.containers.exists(c, c.name in variables.sidecars && c.name in variables.selected) ||
  object.spec.?initContainers.orValue([]).exists(c, c.?restartPolicy.orValue('') == ` + lit(string(corev1.ContainerRestartPolicyAlways)) + ` && (!variables.selValid || c.name in variables.selRaw))`},
		// The drain the pod declares for its proxy (Istio, Linkerd), or -1.
		{"declaredDrain", declaredDrain()},
		{"drain", `!variables.hasSidecar ? 0 : variables.declaredDrain >= 0 ? variables.declaredDrain : variables.sbDefault`},
		{"s0", `[variables.prevApp, variables.wantApp].max()`},
		{"need", `([variables.ownHook] +
  variables.pre.filter(p, p[2] == 1).map(p, int(p[0])) +
  (variables.s0 > 0 || variables.pre.exists(p, p[0] < 0) ? [variables.s0 + variables.budget] : [])).max() + variables.drain`},
		{"limit", `variables.need > variables.T && variables.extend ?
  (variables.cap > 0 && variables.need > [variables.cap, variables.T].max() ? [variables.cap, variables.T].max() : variables.need) : variables.T`},
		// [sleep, skip] of the app containers (sidecars are placed next).
		{"appFinal", `variables.newC.map(c, cel.bind(p, variables.pre[variables.newNames.indexOf(c.name)],
  !(c.name in variables.sidecars) && p[0] > 0 ?
    cel.bind(v, [int(p[0]), variables.limit - variables.budget - variables.drain].min(), v >= 1 ? [v, 0] : [0, ` + skipCode(inject.SkipGraceTooShort) + `]) :
    [0, int(p[1])]))`},
		{"S", `([variables.prevApp] + variables.newC.filter(c, !(c.name in variables.sidecars)).map(c, int(variables.appFinal[variables.newNames.indexOf(c.name)][0]))).max()`},
		{"final", `variables.newC.map(c, cel.bind(p, variables.pre[variables.newNames.indexOf(c.name)],
  c.name in variables.sidecars && p[0] != 0 ?
    cel.bind(v, p[2] == 1 ? [int(p[0]), variables.limit - variables.drain].min() :
      [[variables.S + variables.budget, variables.limit - variables.drain].min(), [variables.S, variables.limit].min()].max(),
      v >= 1 ? [v, 0] : [0, ` + skipCode(inject.SkipGraceTooShort) + `]) :
    variables.appFinal[variables.newNames.indexOf(c.name)]))`},
		{"placed", `([variables.ownHook, variables.S > 0 ? variables.S + variables.budget : 0] +
  variables.newC.filter(c, c.name in variables.sidecars).map(c, int(variables.final[variables.newNames.indexOf(c.name)][0]))).max()`},
		{"newT", `variables.T == 0 || !variables.anyWanted && !variables.newNativeServed || variables.placed == 0 ? variables.T :
  [variables.T, [variables.placed + variables.drain, variables.limit].min()].max()`},
		{"entries", sub(`variables.newC.map(c, cel.bind(p, variables.final[variables.newNames.indexOf(c.name)],
  {name} + c.name + '"' + (c.name in variables.sidecars ? {sidecar} : '') +
  (p[1] == {notSel} ? {skipped} :
    p[0] > 0 ? {sleep} + string(p[0]) + {hook} + variables.hook + '"' :
    p[1] > 0 ? {reason} + {reasons}[p[1]] + '"' : '') + {exec} + '}'))`,
			"name", lit("{"+field("name")+`"`), "sidecar", lit(","+field("role")+strconv.Quote(string(policy.RoleSidecar))),
			"notSel", skipCode(policy.SkipNotSelected), "skipped", lit(","+field("skipped")+strconv.Quote(policy.SkipNotSelected)),
			"sleep", lit(","+field("preStopSleep")), "hook", lit(","+field("hook")+`"`), "reason", lit(","+field("preStopSkipped")+`"`),
			"reasons", skipReasons(), "exec", execRecord(v("execPlans")+"[variables.newNames.indexOf(c.name)]"))},
		{"nativeEntries", sub(`variables.newNative.map(c, {name} + c.name + {native} +
  (!variables.selValid || c.name in variables.selRaw ? '' : {skipped}) + {exec} + '}')`,
			"name", lit("{"+field("name")+`"`), "native", lit(`",`+field("init")+"true,"+field("role")+strconv.Quote(string(policy.RoleNativeSidecar))),
			"skipped", lit(","+field("skipped")+strconv.Quote(policy.SkipNotSelected)), "exec", execRecord(v("nativePlans")+"[variables.nativeNames.indexOf(c.name)]"))},
		{"allEntries", `variables.nativeEntries + variables.entries`},
		{"status", sub(`{v} + string(variables.graceBefore) + {after} + string(variables.newT) + {containers} + (variables.prevEntries + variables.allEntries).join(',') + ']}'`,
			"v", lit("{"+field("v")+strconv.Itoa(inject.StatusVersion)+","+field("graceBefore")), "after", lit(","+field("graceAfter")), "containers", lit(","+field("containers")+"["))},
	}...)
	return vars
}

// skipOrder are the status's skip reasons (pkg/inject, pkg/policy), indexed
// by a plan's skip code (0: not skipped); all but the last are written as
// preStopSkipped, the last as skipped.
var skipOrder = []string{"", inject.SkipOff, inject.SkipExistingPreStop, inject.SkipGraceZero, inject.SkipRunToCompletion, inject.SkipGraceTooShort, policy.SkipNotSelected}

// skipCode is a skip reason's code in the plans.
func skipCode(reason string) string {
	for i, r := range skipOrder {
		if r == reason {
			return strconv.Itoa(i)
		}
	}
	panic("no skip code for " + reason)
}

// skipReasons is the CEL list of the preStopSkipped values by code.
func skipReasons() string {
	quoted := make([]string, len(skipOrder))
	for i, r := range skipOrder {
		quoted[i] = lit(r)
	}
	quoted[len(quoted)-1] = lit("")
	return "[" + strings.Join(quoted, ", ") + "]"
}

// field is `"NAME":`, a status field as inject.Status marshals it.
func field(name string) string { return strconv.Quote(name) + ":" }

// ownSleep is hookSeconds in CEL: how long a container's own preStop hook
// sleeps when it is a plain sleep (the native action, `sleep N` as Linkerd
// writes it, or `sh -c "sleep N"`); 0 for any other hook.
func ownSleep(c string) string {
	return sub(`(!has({c}.lifecycle) || !has({c}.lifecycle.preStop) ? 0 :
  has({c}.lifecycle.preStop.sleep) ? [int({c}.lifecycle.preStop.sleep.seconds), 0].max() :
  !has({c}.lifecycle.preStop.exec) ? 0 :
  cel.bind(a0, {c}.lifecycle.preStop.exec.?command.orValue([]),
    cel.bind(a, a0.size() == 3 && a0[0].find(r'[^/]*$') in ['sh', 'bash'] && a0[1] == '-c' ? a0[2].findAll(r'\S+') : a0,
      cel.bind(n, a.size() == 2 && a[0].find(r'[^/]*$') == 'sleep' ? (a[1].endsWith('s') ? a[1].substring(0, a[1].size() - 1) : a[1]) : '',
        n.matches(r'^\+?[0-9]{1,18}$') ? int(n) : 0))))`, "c", c)
}

// declaredDrain is policy.DeclaredDrain in CEL: the longer of Istio's
// terminationDrainDuration (rounded up to seconds) and Linkerd's
// proxy-wait-before-exit-seconds, or -1 when the pod declares neither.
func declaredDrain() string {
	maxN, maxD := seconds(policy.MaxDrain)
	return sub(`[
  {ik} in variables.ann ?
    cel.bind(m, variables.ann[{ik}].find(r'terminationDrainDuration[\x22\x27]?\s*:\s*[\x22\x27]?[^\x22\x27\s,}]*'),
      cel.bind(t, m.find(r'[^\x22\x27\s:]*$').trim(),
        t.size() <= {dsz} && t.matches({dur}) ? cel.bind(d, duration(t),
          d >= duration('0s') && d <= {maxD} ? d.getSeconds() + (d > duration(string(d.getSeconds()) + 's') ? 1 : 0) : -1) : -1)) : -1,
  {lk} in variables.ann ?
    cel.bind(t, variables.ann[{lk}].trim(), t.matches({int}) && int(t) >= 0 && int(t) <= {maxN} ? int(t) : -1) : -1
].max()`, "ik", lit(policy.AnnotationIstioProxyConfig), "lk", lit(policy.AnnotationLinkerdWaitBeforeExit),
		"dsz", strconv.Itoa(maxDurationSz), "dur", raw(durationRE), "int", raw(intRE), "maxN", maxN, "maxD", maxD)
}

// mutationExpression is a JSON patch: the sleeps, the grace period and the
// status (an apply configuration cannot set exec.command, an atomic list). A
// pass with no new container changes nothing.
var mutationExpression = `variables.allEntries.size() == 0 ? [] :
  [has(object.metadata.annotations) ?
    JSONPatch{op: 'add', path: ` + lit("/metadata/annotations/"+strings.ReplaceAll(policy.AnnotationStatus, "/", "~1")) + `, value: variables.status} :
    JSONPatch{op: 'add', path: '/metadata/annotations', value: {` + lit(policy.AnnotationStatus) + `: variables.status}}] +
  (variables.newT != variables.T ? [JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: variables.newT}] : []) +
  variables.newC.filter(c, variables.final[variables.newNames.indexOf(c.name)][0] > 0).map(c,
    cel.bind(s, int(variables.final[variables.newNames.indexOf(c.name)][0]),
    cel.bind(i, string(object.spec.containers.map(x, x.name).indexOf(c.name)),
    cel.bind(h, variables.hook == ` + lit(string(policy.HookExec)) + ` ?
        Object.spec.containers.lifecycle.preStop{exec: Object.spec.containers.lifecycle.preStop.exec{command: ['sleep', string(s)]}} :
        Object.spec.containers.lifecycle.preStop{sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: s}},
      has(c.lifecycle) ?
        JSONPatch{op: 'add', path: '/spec/containers/' + i + '/lifecycle/preStop', value: h} :
        JSONPatch{op: 'add', path: '/spec/containers/' + i + '/lifecycle', value: Object.spec.containers.lifecycle{preStop: h}})))) +
  ` + execPatches(v("newC"), "containers", v("execPlans"), v("newNames")) + ` +
  ` + execPatches(v("newNative"), "initContainers", v("nativePlans"), v("nativeNames"))
