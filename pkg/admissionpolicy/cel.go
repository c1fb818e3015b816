package admissionpolicy

import (
	"strconv"
	"strings"
	"time"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// The CEL below is built from small Go functions so that every parser is
// written once and inlined wherever it is needed (CEL has no user functions).
// Rules every snippet keeps (docs/design.md §10):
//   - no runtime error on any input: duration() and int() only run on text a
//     matches() guard has proven they accept (a runtime error skips the whole
//     policy for the pod);
//   - no math.greatest (absent in the 1.36 environment): [a, b].max();
//   - every sleep is at most the grace period the mutation writes, by
//     construction (a pod failing validation would be rejected).

// A parsed prestop-sleep value is an int code in CEL: -1 auto, 0 off (also
// `0`, `0s`), -2 invalid (the next level applies), -3 key not set, and any
// positive value a fixed sleep in seconds.

// Regular expressions of the parsers. intRE is what strconv.ParseInt accepts
// with at most 4 significant digits (more is outside 0..3600 anyway);
// durationRE is time.ParseDuration's grammar with at most 6 integer digits
// per element, which with the 20-character bound cannot overflow.
const (
	intRE         = `^[+-]?0*[0-9]{1,4}$`
	longIntRE     = `^[+-]?[0-9]+$`
	durationRE    = `^[-+]?(([0-9]{1,6}(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`
	maxDurationSz = 20
	// maxSettingDurationSz bounds a duration setting's text the same way:
	// with 6 integer digits per element, 40 characters cannot overflow.
	maxSettingDurationSz = 40
	dnsLabelRE           = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// settingDurationRE is durationRE without a sign: a negative setting
	// counts as 0.
	settingDurationRE = `^(([0-9]{1,6}(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`
	// ratioRE bounds the ratio setting's text so that double() accepts it.
	ratioRE = `^[0-9]{1,3}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?$`
)

// statusRE matches the opening of a status annotation of this format
// version (inject.StatusVersion), as inject.Status marshals it.
var statusRE = `^\{"v":` + strconv.Itoa(inject.StatusVersion) + `,"graceBefore":[0-9]{1,18},"graceAfter":[0-9]{1,18},"containers":\[`

// seconds writes a bound of pkg/policy as a CEL int and as a CEL duration.
func seconds(d time.Duration) (n, dur string) {
	s := strconv.FormatInt(int64(d/time.Second), 10)
	return s, "duration('" + s + "s')"
}

// raw quotes a regular expression as a CEL raw string.
func raw(re string) string { return "r'" + re + "'" }

// lit quotes a Go string as a CEL string literal.
func lit(s string) string { return strconv.Quote(s) }

// sub replaces the {name} placeholders of a CEL template.
func sub(tmpl string, kv ...string) string {
	pairs := make([]string, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, "{"+kv[i]+"}", kv[i+1])
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// parseSleep is ParseSleep in CEL: v is a string expression; the result is
// an int code (above).
// Each call gets its own variable names (id) so that snippets nest.
func parseSleep(v, id string) string {
	maxN, maxD := seconds(policy.MaxSleep)
	return sub(`cel.bind(t{id}, ({v}).trim(), cel.bind(l{id}, t{id}.lowerAscii(),
  l{id} == {auto} ? -1 : l{id} == {off} ? 0 :
  t{id}.matches({int}) ? (int(t{id}) >= 0 && int(t{id}) <= {maxN} ? int(t{id}) : -2) :
  t{id}.matches({long}) ? -2 :
  t{id}.size() <= {dsz} && t{id}.matches({dur}) ? cel.bind(d{id}, duration(t{id}),
    d{id} >= duration('0s') && d{id} <= {maxD} && d{id} == duration(string(d{id}.getSeconds()) + 's') ? d{id}.getSeconds() : -2) :
  -2))`, "id", id, "v", v, "int", raw(intRE), "long", raw(longIntRE), "dsz", strconv.Itoa(maxDurationSz), "dur", raw(durationRE),
		"auto", lit(policy.SleepAuto), "off", lit(policy.SleepOff), "maxN", maxN, "maxD", maxD)
}

// parseBool is ParseBool (and ParseSwitch with on/off) in CEL: 1, 0 or -2 (invalid).
func parseBool(v, yes, no string) string {
	return sub(`(({v}).trim().lowerAscii() == {yes} ? 1 : ({v}).trim().lowerAscii() == {no} ? 0 : -2)`, "v", v, "yes", lit(yes), "no", lit(no))
}

// lookup parses m[key] with parse, or gives -3 (not set).
func lookup(m, key string, parse func(string) string) string {
	return sub(`({key} in {m} ? {p} : -3)`, "key", key, "m", m, "p", parse(m+"["+key+"]"))
}

// over applies one level of the precedence: a valid code (>= -1) replaces
// below, a pair [value, level]; an invalid or absent one keeps it.
func over(below, code, level, id string) string {
	return sub(`cel.bind(x{id}, {code}, x{id} >= -1 ? [x{id}, {level}] : {below})`, "id", id, "code", code, "level", level, "below", below)
}

// durationSetting reads a compiled-in duration setting (a CEL string
// literal) as whole seconds. Settings come from `podgrace generate policy`
// or the chart (whose schema checks the format); the guard keeps a malformed
// one from raising: it counts as 0.
func durationSetting(v string) string {
	return sub(`({v}.size() <= {sz} && {v}.matches({re}) ? duration({v}).getSeconds() : 0)`,
		"v", v, "re", raw(settingDurationRE), "sz", strconv.Itoa(maxSettingDurationSz))
}

// expandBind rewrites every cel.bind(x, e, body) into [e].map(x, body)[0]:
// the admission policy environment of Kubernetes 1.36 has no cel.bind, and
// a one-element map binds a name as well.
func expandBind(expr string) string {
	const kw = "cel.bind("
	for {
		i := indexOutsideStrings(expr, kw)
		if i < 0 {
			return expr
		}
		args, end := splitArgs(expr, i+len(kw))
		if len(args) != 3 {
			panic("cel.bind needs 3 arguments: " + expr[i:end])
		}
		expr = expr[:i] + "[" + args[1] + "].map(" + args[0] + ", " + args[2] + ")[0]" + expr[end:]
	}
}

// indexOutsideStrings finds sub in s outside CEL string literals.
func indexOutsideStrings(s, sub string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			switch c {
			case '\\':
				i++
			case quote:
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case strings.HasPrefix(s[i:], sub):
			return i
		}
	}
	return -1
}

// splitArgs splits the arguments of a call whose '(' ends just before
// start, at top-level commas; end is the index after the closing ')'.
func splitArgs(s string, start int) (args []string, end int) {
	depth, last := 0, start
	var quote byte
	for i := start; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			switch c {
			case '\\':
				i++
			case quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"':
			quote = c
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			if depth == 0 {
				return append(args, strings.TrimSpace(s[last:i])), i + 1
			}
			depth--
		case ',':
			if depth == 0 {
				args = append(args, strings.TrimSpace(s[last:i]))
				last = i + 1
			}
		}
	}
	panic("unbalanced call: " + s[start:])
}
