package admissionpolicy

import (
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podgrace/podgrace/pkg/execform"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// TestLiteralsFromGo: every word in a CEL string literal and every number
// of the generated policies has a source in the Go core (pkg/policy,
// pkg/inject, the Kubernetes API types), so a fact is not typed twice. A
// literal written by hand into the CEL (a new skip reason, a key, a
// default) fails here until it is taken from Go. Regular expressions
// (r'…', the parsers' grammar) and warning prose (literals with a space)
// are not words of the Go core and are not checked.
func TestLiteralsFromGo(t *testing.T) {
	t.Parallel()
	cfg := policy.Default()
	cfg.Sidecars = []string{"x"}
	objs, err := Generate(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, v := range objs.Mutating.Spec.Variables {
		exprs = append(exprs, v.Expression)
	}
	for _, m := range objs.Mutating.Spec.Mutations {
		exprs = append(exprs, m.JSONPatch.Expression)
	}
	for _, v := range objs.Validating.Spec.Variables {
		exprs = append(exprs, v.Expression)
	}
	for _, v := range objs.Validating.Spec.Validations {
		exprs = append(exprs, v.Expression, v.MessageExpression)
	}
	for _, v := range objs.ExecForm.Spec.Variables {
		exprs = append(exprs, v.Expression)
	}
	for _, v := range objs.ExecForm.Spec.Validations {
		exprs = append(exprs, v.Expression, v.MessageExpression)
	}
	for _, c := range objs.ExecForm.Spec.MatchConditions {
		exprs = append(exprs, c.Expression)
	}
	for _, c := range objs.Mutating.Spec.MatchConditions {
		exprs = append(exprs, c.Expression)
	}
	// The workload policy (workload.go).
	for _, v := range objs.WorkloadValidating.Spec.Variables {
		exprs = append(exprs, v.Expression)
	}
	for _, c := range objs.WorkloadValidating.Spec.MatchConditions {
		exprs = append(exprs, c.Expression)
	}

	words := vocabulary()
	numbers := map[int64]bool{}
	for _, n := range []int64{inject.DefaultGracePeriod, int64(policy.MaxSleep / time.Second), int64(policy.MaxDrain / time.Second),
		inject.StatusVersion, int64(validation.DNS1123LabelMaxLength), maxDurationSz, maxSettingDurationSz, int64(len(perContainerSuffix))} {
		numbers[n] = true
	}
	for _, f := range []string{"name", "graceBefore", "preStopSleep"} {
		numbers[int64(len(field(f)))], numbers[int64(len(field(f))+1)] = true, true
	}
	// Plan codes are the generator's own encoding (cel.go), not facts:
	// -3..-1 for a setting's state, the skip codes up to len(skipOrder).
	for n := -3; n < len(skipOrder); n++ {
		numbers[int64(n)] = true
	}
	// The settings compiled in are the config's, not the CEL's.
	settings := map[string]bool{}
	for _, v := range SettingsOf(&cfg) {
		settings[v] = true
	}

	checked := 0
	for _, e := range exprs {
		lits, nums := scanCEL(t, e)
		for _, l := range lits {
			if settings[l] || strings.Contains(l, " ") {
				continue
			}
			for _, w := range wordRE.FindAllString(l, -1) {
				checked++
				if !words[w] {
					t.Errorf("CEL string literal %q: %q has no source in the Go core", l, w)
				}
			}
		}
		for _, n := range nums {
			checked++
			if !numbers[n] {
				t.Errorf("CEL number %d has no source in the Go core (in %.200s)", n, e)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d literals checked: the scanner misses the CEL's literals", checked)
	}
	// The check sees a hand-typed literal.
	lits, nums := scanCEL(t, `x == 'grace-period-short' ? 31 : 0`)
	if words[wordRE.FindAllString(lits[0], -1)[0]] || numbers[nums[0]] {
		t.Error("a literal without a Go source passes")
	}
}

var wordRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9_.-]*`)

// vocabulary is every word the Go core declares that the CEL may write.
func vocabulary() map[string]bool {
	w := map[string]bool{}
	add := func(ss ...string) {
		for _, s := range ss {
			for _, x := range wordRE.FindAllString(s, -1) {
				w[x] = true
			}
		}
	}
	for _, k := range policy.Keys {
		add(k.Name)
	}
	add(policy.Prefix, policy.AnnotationIstioProxyConfig, policy.AnnotationLinkerdWaitBeforeExit, corev1.MirrorPodAnnotationKey,
		policy.SleepAuto, policy.SleepOff, policy.SwitchOn, policy.SwitchOff, strconv.FormatBool(true), strconv.FormatBool(false),
		string(policy.HookExec), string(policy.HookSleep), string(policy.RoleSidecar), string(policy.RoleNativeSidecar))
	add(skipOrder...)
	add(string(corev1.RestartPolicyAlways), string(corev1.RestartPolicyNever), string(corev1.RestartPolicyOnFailure))
	// The status fields, as inject.Status marshals them.
	jsonNames(reflect.TypeFor[inject.Status](), add, map[reflect.Type]bool{})
	// JSON patch paths: the Pod's fields.
	jsonNames(reflect.TypeFor[corev1.Pod](), add, map[reflect.Type]bool{})
	// The JSON patch operation (RFC 6902) the webhook's patches use too;
	// the exec hook's program (pkg/inject writes ["sleep", "S"]) and the
	// shells whose `sleep N` hooks pkg/inject reads.
	add("add", "sleep", "sh", "bash", "c", "s")
	// The exec-form shapes' word lists and results (pkg/execform), the
	// operation that unsets args, and the plans' own "other".
	add(execform.ShapeShells()...)
	add(execform.ShapeWrappers()...)
	add(execform.ShapeRefusedFirst()...)
	add(execform.ShapeBuiltins()...)
	add(execform.BashEnv, string(execform.KindDirect), string(execform.KindExec), "remove", execOther)
	// The workload policy: the kinds of pkg/workload, the opt-out label's
	// value and the admission operation it matches.
	for _, k := range workload.Kinds {
		add(k.Kind)
	}
	add(policy.InjectDisabled, string(admissionregistrationv1.Create))
	return w
}

// jsonNames adds the JSON field names of t and the types it holds.
func jsonNames(t reflect.Type, add func(...string), seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			add(name)
		}
		jsonNames(f.Type, add, seen)
	}
}

// scanCEL returns the string literals (unquoted; raw strings left out) and
// the integer literals of a CEL expression.
func scanCEL(t *testing.T, e string) (lits []string, nums []int64) {
	t.Helper()
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case c == '\'' || c == '"':
			rawStr := i > 0 && e[i-1] == 'r'
			j := i + 1
			for ; j < len(e) && e[j] != c; j++ {
				if e[j] == '\\' {
					j++
				}
			}
			body := e[i+1 : j]
			if !rawStr {
				u, err := strconv.Unquote(`"` + strings.ReplaceAll(strings.ReplaceAll(body, `\'`, `'`), `"`, `\"`) + `"`)
				if c == '"' {
					u, err = strconv.Unquote(e[i : j+1])
				}
				if err != nil { // escapes CEL has and Go lacks: the text as written
					u = body
				}
				lits = append(lits, u)
			}
			i = j
		case c >= '0' && c <= '9' && (i == 0 || !isIdent(e[i-1])):
			j := i
			for j < len(e) && e[j] >= '0' && e[j] <= '9' {
				j++
			}
			n, _ := strconv.ParseInt(e[i:j], 10, 64)
			if i > 0 && e[i-1] == '-' && (i < 2 || !slices.Contains([]byte("])0123456789"), e[i-2])) && (i < 3 || e[i-3] != ')') {
				n = -n
			}
			nums = append(nums, n)
			i = j - 1
		}
	}
	return lits, nums
}

func isIdent(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
