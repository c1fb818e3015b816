package admissionpolicy

import (
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
		{"selValid", sub(`{k} in variables.ann && variables.selRaw.size() > 0 && variables.selRaw.all(n, n.size() <= 63 && n.matches({dns}))`,
			"k", lit(policy.AnnotationContainers), "dns", raw(dnsLabelRE))},
	}
}

// mutationVariables computes the plan of DESIGN §2 and §4 (docs/design.md):
// for each container the API server has not seen podgrace's status list yet,
// a map {name, sleep, skip, own}; then the grace period and the status.
func mutationVariables() []variable {
	sleepKey := lit(policy.AnnotationPreStopSleep)
	egKey := lit(policy.AnnotationExtendGrace)
	vars := commonVariables()
	vars = append(vars, []variable{
		{"T", `int(has(object.spec.terminationGracePeriodSeconds) ? object.spec.terminationGracePeriodSeconds : 30)`},
		{"rtc", `object.spec.?restartPolicy.orValue('Always') in ['Never', 'OnFailure']`},
		{"sleepRTC", `params.data[?'sleepRunToCompletion'].orValue('false') == 'true'`},
		{"sidecars", `params.data[?'sidecars'].orValue('').split(',').map(s, s.trim()).filter(s, s != '')`},
		{"ratio", `params.data[?'ratio'].orValue('').matches(r'^[0-9]{1,3}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?$') ? double(params.data['ratio']) : 0.5`},
		{"minS", durationParam("min")},
		{"maxS", durationParam("max")},
		{"budget", durationParam("shutdownBudget")},
		{"sbDefault", durationParam("sidecarShutdownBudget")},
		{"cap", durationParam("maxGracePeriod")},
		{"hook", `params.data[?'hookAction'].orValue('sleep') == 'exec' ? 'exec' : 'sleep'`},
		// extend-grace: cluster < namespace < pod.
		{"extend", sub(`cel.bind(c, params.data[?'extendGrace'].orValue('true') == 'true' ? 1 : 0,
  cel.bind(n, {ns}, cel.bind(p, {pod}, p >= 0 ? p == 1 : n >= 0 ? n == 1 : c == 1)))`,
			"ns", lookup(v("nsAnn"), egKey, func(x string) string { return parseBool(x, "true", "false") }),
			"pod", lookup(v("ann"), egKey, func(x string) string { return parseBool(x, "true", "false") }))},
		{"clusterSleep", sub(`cel.bind(c, {p}, c == -2 ? -1 : c)`, "p", parseSleep(`params.data[?'preStopSleep'].orValue('auto')`, "C"))},
		// [value, level]: level 0 cluster, 1 namespace, 2 pod, 3 container.
		{"podSleep", over(over(`[variables.clusterSleep, 0]`, lookup(v("nsAnn"), sleepKey, func(x string) string { return parseSleep(x, "N") }), "1", "N"),
			lookup(v("ann"), sleepKey, func(x string) string { return parseSleep(x, "P") }), "2", "P")},
		{"selected", `object.spec.containers.filter(c, !variables.selValid || c.name in variables.selRaw).map(c, c.name)`},
		// The status the policy wrote on an earlier pass (reinvocation).
		{"prev", sub(`{k} in variables.ann && variables.ann[{k}].matches({re}) ? variables.ann[{k}] : ''`, "k", lit(policy.AnnotationStatus), "re", raw(statusRE))},
		{"prevEntries", `variables.prev == '' ? [] : variables.prev.findAll(r'\{"name":"[a-z0-9-]{1,63}"[^{}]*\}')`},
		{"prevNames", `variables.prevEntries.map(e, e.find(r'"name":"[a-z0-9-]{1,63}"')).map(n, n.substring(8, n.size() - 1))`},
		{"prevS", `([0] + variables.prevEntries.filter(e, !e.contains('"role":')).map(e, e.find(r'"preStopSleep":[0-9]{1,9}')).filter(x, x != '').map(x, int(x.substring(15)))).max()`},
		{"graceBefore", `variables.prev == '' ? variables.T : int(variables.prev.find(r'"graceBefore":[0-9]{1,18}').substring(14))`},
		// The proxy's own drain replaces sidecarShutdownBudget when the pod declares it.
		{"sb", sub(`{lk} in variables.ann && variables.ann[{lk}].matches(r'^[0-9]{1,6}$') ? int(variables.ann[{lk}]) :
  ({ik} in variables.ann && variables.ann[{ik}].find(r'terminationDrainDuration["]?\s*:\s*["]?[0-9]{1,6}s') != '' ?
    int(variables.ann[{ik}].find(r'terminationDrainDuration["]?\s*:\s*["]?[0-9]{1,6}s').find(r'[0-9]{1,6}')) : variables.sbDefault)`,
			"lk", lit(LinkerdWaitBeforeExit), "ik", lit(IstioProxyConfig))},
		{"hasSidecar", `object.spec.containers.exists(c, c.name in variables.sidecars) || object.spec.?initContainers.orValue([]).exists(c, c.?restartPolicy.orValue('') == 'Always')`},
		{"sbx", `variables.hasSidecar ? variables.sb : 0`},
		{"limit", `variables.extend ? [variables.T, variables.cap].max() : variables.T`},
		{"newC", `object.spec.containers.filter(c, !(c.name in variables.prevNames))`},
		{"newNames", `variables.newC.map(c, c.name)`},
		// A plan is [sleep, skip, own]: the sleep to add, why none (an index
		// into skipReasons) and the seconds of the container's own sleep hook.
		{"appPlans", sub(`variables.newC.map(c, !(c.name in variables.selected) ? [0, 6, 0] : c.name in variables.sidecars ? [0, 0, 0] :
  cel.bind(cs, {cs},
    cs[0] == 0 ? [0, 1, 0] :
    has(c.lifecycle) && has(c.lifecycle.preStop) ? [0, 2, 0] :
    variables.T == 0 ? [0, 3, 0] :
    variables.rtc && !variables.sleepRTC && !(cs[0] > 0 && cs[1] > 0) ? [0, 4, 0] :
    cel.bind(s, [cs[0] > 0 ? cs[0] : {auto}, variables.limit - variables.budget - variables.sbx].min(),
      s >= 1 ? [s, 0, 0] : [0, 5, 0])))`,
			"cs", over(v("podSleep"), lookup(v("ann"), contAnn("c.name", policy.AnnotationPreStopSleep), func(x string) string { return parseSleep(x, "K") }), "3", "K"),
			"auto", `cel.bind(r, variables.ratio * double(variables.T), r >= double(variables.maxS) ? variables.maxS : r < double(variables.minS) ? variables.minS : int(r))`)},
		{"S", `([variables.prevS] + variables.appPlans.map(p, p[0])).max()`},
		{"plans", sub(`variables.newC.map(c, !(c.name in variables.sidecars && c.name in variables.selected) ? variables.appPlans[variables.newNames.indexOf(c.name)] :
  cel.bind(o, {o},
    o == 0 ? [0, 1, 0] :
    has(c.lifecycle) && has(c.lifecycle.preStop) ? [0, 2, {own}] :
    variables.T == 0 ? [0, 3, 0] :
    cel.bind(l, [o > 0 ? o : variables.S + variables.budget, variables.limit - variables.sb].min(),
      l >= 1 ? [l, 0, 0] : [0, 5, 0])))`,
			"o", lookup(v("ann"), contAnn("c.name", policy.AnnotationPreStopSleep), func(x string) string { return parseSleep(x, "O") }),
			"own", ownSleep("c"))},
		{"newT", `([variables.T] + variables.newC.map(c, cel.bind(p, variables.plans[variables.newNames.indexOf(c.name)],
  p[0] > 0 ? (c.name in variables.sidecars ? p[0] + variables.sb : p[0] + variables.budget + variables.sbx) :
  p[2] > 0 ? [int(p[2]) + variables.sb, variables.limit].min() : 0))).max()`},
		{"entries", sub(`variables.newC.map(c, cel.bind(p, variables.plans[variables.newNames.indexOf(c.name)],
  '{"name":"' + c.name + '"' +
  (p[1] == 6 ? ',"skipped":"not-in-containers-annotation"' :
    (c.name in variables.sidecars ? ',"role":"sidecar"' : '') +
    (p[0] > 0 ? ',"preStopSleep":' + string(p[0]) + ',"hook":"' + variables.hook + '"' : ',"preStopSkipped":"' + {reasons}[p[1]] + '"')) + '}'))`,
			"reasons", skipReasons)},
		{"status", `'{"v":1,"graceBefore":' + string(variables.graceBefore) + ',"graceAfter":' + string(variables.newT) + ',"containers":[' + (variables.prevEntries + variables.entries).join(',') + ']}'`},
	}...)
	return vars
}

// skipReasons are the status's preStopSkipped values, indexed by a plan's
// skip code (0: not skipped, 6: not selected, written as "skipped").
const skipReasons = `['', 'off', 'existing-prestop', 'grace-period-zero', 'run-to-completion', 'grace-too-short', '']`

// ownSleep is the seconds of a container's own preStop sleep hook (the
// sleep action, or exec sleep N as Linkerd adds), 0 for any other hook.
func ownSleep(c string) string {
	return sub(`(has({c}.lifecycle.preStop.sleep) ? int({c}.lifecycle.preStop.sleep.seconds) :
  has({c}.lifecycle.preStop.exec) && {c}.lifecycle.preStop.exec.?command.orValue([]).size() == 2 &&
  {c}.lifecycle.preStop.exec.command[0] in ['sleep', '/bin/sleep', '/usr/bin/sleep'] && {c}.lifecycle.preStop.exec.command[1].matches(r'^[0-9]{1,6}$') ?
  int({c}.lifecycle.preStop.exec.command[1]) : 0)`, "c", c)
}

// mutationExpression is the apply configuration: the sleeps, the grace
// period and the status. A pass with no new container changes nothing.
const mutationExpression = `variables.entries.size() == 0 ? Object{} : Object{
  metadata: Object.metadata{annotations: {"podgrace.dev/status": variables.status}},
  spec: Object.spec{
    ?terminationGracePeriodSeconds: variables.newT != variables.T ? optional.of(variables.newT) : optional.none(),
    ?containers: cel.bind(ps, variables.newC.filter(c, variables.plans[variables.newNames.indexOf(c.name)][0] > 0),
      ps.size() == 0 ? optional.none() : optional.of(ps.map(c, cel.bind(s, variables.plans[variables.newNames.indexOf(c.name)][0], Object.spec.containers{
        name: c.name,
        lifecycle: Object.spec.containers.lifecycle{
          preStop: variables.hook == 'exec' ?
            Object.spec.containers.lifecycle.preStop{exec: Object.spec.containers.lifecycle.preStop.exec{command: ['sleep', string(s)]}} :
            Object.spec.containers.lifecycle.preStop{sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: s}}
        }
      }))))
  }
}`
