package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The bounds of the cluster config are declared here and in durationBounds
// (config.go), once: Validate checks them, values.schema.json encodes what
// JSON Schema can express (ConfigSchema), and the chart's generated
// templates/_config.tpl checks the rest at `helm install` (hack/manifests).

// NumberBound is the inclusive range of a number of the cluster config.
type NumberBound struct {
	Path     string
	Min, Max float64
	// Integer: the value is a whole number.
	Integer bool
	get     func(*Config) float64
}

var numberBounds = []NumberBound{
	{Path: "ratio", Min: 0, Max: 10, get: func(c *Config) float64 { return c.Ratio }},
	// More entries than a webhook could ever hold; the bound keeps a typo
	// from overflowing an int.
	{Path: "imageInspection.cacheSize", Min: 1, Max: math.MaxInt32, Integer: true, get: func(c *Config) float64 { return float64(c.ImageInspection.CacheSize) }},
}

// NumberBounds returns the bounds of every number of the cluster config.
func NumberBounds() []NumberBound { return append([]NumberBound(nil), numberBounds...) }

// Range renders the bound as error messages write it.
func (b *NumberBound) Range() string {
	return "[" + strconv.FormatFloat(b.Min, 'f', -1, 64) + ", " + strconv.FormatFloat(b.Max, 'f', -1, 64) + "]"
}

// Schema is the bound's JSON schema.
func (b *NumberBound) Schema() string {
	t := "number"
	if b.Integer {
		t = "integer"
	}
	return fmt.Sprintf(`{"type": %q, "minimum": %s, "maximum": %s}`, t,
		strconv.FormatFloat(b.Min, 'f', -1, 64), strconv.FormatFloat(b.Max, 'f', -1, 64))
}

// QuantityBound is the inclusive range, in bytes, of a quantity of the
// cluster config (a resource.Quantity such as `16Mi`).
type QuantityBound struct {
	Path     string
	Min, Max int64
	get      func(*Config) *resource.Quantity
}

var quantityBounds = []QuantityBound{
	{Path: "imageInspection.cacheBytes", Min: MinImageCacheBytes, Max: MaxImageCacheBytes,
		get: func(c *Config) *resource.Quantity { return &c.ImageInspection.CacheBytes }},
}

// QuantityBounds returns the bounds of every quantity of the cluster config.
func QuantityBounds() []QuantityBound { return append([]QuantityBound(nil), quantityBounds...) }

// Range renders the bound as error messages write it: [1Mi, 1Gi].
func (b *QuantityBound) Range() string {
	return "[" + resource.NewQuantity(b.Min, resource.BinarySI).String() + ", " + resource.NewQuantity(b.Max, resource.BinarySI).String() + "]"
}

// quantityUnits are the suffixes of the chart's quantity grammar, largest
// first, and what each multiplies by.
var quantityUnits = []struct {
	Suffix string
	Len    int64
}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}, {"", 1}}

// Pattern is the chart's grammar of the quantity, a regular expression of
// alternatives without anchors: a whole number of bytes, Ki, Mi or Gi with
// no more digits than the maximum has in that unit. The chart's templates
// convert it to bytes to check the range (Helm has no quantity parser).
func (b *QuantityBound) Pattern() string {
	var alts []string
	for _, u := range quantityUnits {
		if n := b.Max / u.Len; n > 0 {
			alts = append(alts, fmt.Sprintf("[0-9]{1,%d}%s", len(strconv.FormatInt(n, 10)), u.Suffix))
		}
	}
	return strings.Join(alts, "|")
}

// Schema is the bound's JSON schema: the chart's grammar for a string, the
// range for a number of bytes.
func (b *QuantityBound) Schema() string {
	return fmt.Sprintf(`{"type": ["string", "integer"], "pattern": %q, "minimum": %d, "maximum": %d}`, "^("+b.Pattern()+")$", b.Min, b.Max)
}

// check returns the bound's error on c, or nil.
func (b *QuantityBound) check(c *Config) error {
	q := b.get(c)
	if v := q.Value(); v < b.Min || v > b.Max {
		return fmt.Errorf("%s: %s is outside %s", b.Path, q.String(), b.Range())
	}
	return nil
}

// DurationRelation says that the sum of the durations Lower, plus Margin,
// must not exceed the duration Upper.
type DurationRelation struct {
	Lower  []string
	Margin time.Duration
	Upper  string
	// Why is what breaking it means, for the error message.
	Why string
}

var durationRelations = []DurationRelation{
	{Lower: []string{"min"}, Upper: "max", Why: "is greater than"},
	// The grace period counts whole seconds: a cap that leaves no second
	// for a sleep after both budgets makes every sleep impossible.
	{Lower: []string{"shutdownBudget", "sidecarShutdownBudget"}, Margin: time.Second, Upper: "maxGracePeriod", Why: "leaves no second for a sleep"},
}

// DurationRelations returns the relations between durations of the cluster config.
func DurationRelations() []DurationRelation {
	return append([]DurationRelation(nil), durationRelations...)
}

// Rule renders the relation: "shutdownBudget + sidecarShutdownBudget + 1s".
func (r *DurationRelation) Rule() string {
	s := strings.Join(r.Lower, " + ")
	if r.Margin > 0 {
		s += " + " + shortDuration(r.Margin.String())
	}
	return s
}

// check returns the relation's error on c, or nil.
func (r *DurationRelation) check(c *Config) error {
	var sum time.Duration
	for _, p := range r.Lower {
		sum += durationAt(c, p)
	}
	upper := durationAt(c, r.Upper)
	if upper >= sum+r.Margin {
		return nil
	}
	if len(r.Lower) == 1 && r.Margin == 0 {
		return fmt.Errorf("%s (%v) %s %s (%v)", r.Lower[0], sum, r.Why, r.Upper, upper)
	}
	return fmt.Errorf("%s (%v) %s: it must be at least %s (%v)", r.Upper, upper, r.Why, r.Rule(), sum+r.Margin)
}

// durationAt returns the duration of c at path (a path of durationBounds).
func durationAt(c *Config, path string) time.Duration {
	for i := range durationBounds {
		if durationBounds[i].Path == path {
			return durationBounds[i].get(c)
		}
	}
	panic("policy: no duration bound " + path) // TestDurationRelations names only bounded paths
}

// SleepBound is the range of preStopSleep when it is a duration or a number
// of seconds (ParseSleep); `auto` and `off` are its other values.
var SleepBound = DurationBound{Path: "preStopSleep", Max: maxSleep, WholeSeconds: true}

// chartUnits are the units of the chart's duration grammar, largest first.
var chartUnits = []struct {
	Suffix string
	Len    time.Duration
}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}}

// Pattern is the chart's grammar of the bound's duration, a regular
// expression of alternatives without anchors: a whole number of one unit (h,
// m, s, or ms unless WholeSeconds), with no more digits than the bound's
// maximum has in that unit, or 0. Helm has no duration parser: a grammar the
// chart's templates can convert to milliseconds lets them check the rest of
// the range. A bound that excludes zero excludes it here.
func (b *DurationBound) Pattern() string {
	var alts []string
	noZero := b.MinExclusive && b.Min == 0
	if b.Min == 0 && !noZero {
		alts = append(alts, "0")
	}
	for _, u := range chartUnits {
		if b.WholeSeconds && u.Len < time.Second {
			continue
		}
		n := int64(b.Max / u.Len)
		if n == 0 {
			continue
		}
		digits := len(strconv.FormatInt(n, 10))
		if noZero {
			alts = append(alts, fmt.Sprintf("[1-9][0-9]{0,%d}%s", digits-1, u.Suffix))
		} else {
			alts = append(alts, fmt.Sprintf("[0-9]{1,%d}%s", digits, u.Suffix))
		}
	}
	return strings.Join(alts, "|")
}

// Schema is the bound's JSON schema: the chart's grammar.
func (b *DurationBound) Schema() string {
	return fmt.Sprintf(`{"type": "string", "pattern": %q}`, "^("+b.Pattern()+")$")
}

// sleepSchema is preStopSleep's JSON schema: auto, off, a whole number of
// seconds or a duration of the chart's grammar.
func sleepSchema() string {
	digits := len(strconv.FormatInt(int64(SleepBound.Max/time.Second), 10))
	return fmt.Sprintf(`{"type": "string", "pattern": %q}`,
		fmt.Sprintf("^(%s|%s|[0-9]{1,%d}|%s)$", SleepAuto, SleepOff, digits, SleepBound.Pattern()))
}

// schemaOf is a field's JSON schema: its bound's when it has one.
func schemaOf(f ConfigField) string {
	if f.Path == SleepBound.Path {
		return sleepSchema()
	}
	for i := range durationBounds {
		if durationBounds[i].Path == f.Path {
			return durationBounds[i].Schema()
		}
	}
	for i := range numberBounds {
		if numberBounds[i].Path == f.Path {
			return numberBounds[i].Schema()
		}
	}
	for i := range quantityBounds {
		if quantityBounds[i].Path == f.Path {
			return quantityBounds[i].Schema()
		}
	}
	return f.Schema
}

// isDuration says whether the field at path is a bounded duration.
func isDuration(path string) bool {
	for i := range durationBounds {
		if durationBounds[i].Path == path {
			return true
		}
	}
	return false
}

// DefaultOf returns the default of the field at path as values.yaml writes
// it (durations short: 1m, not 1m0s); nil for an unknown path.
func DefaultOf(path string) any {
	defs := defaults()
	for _, f := range ConfigFields {
		if f.Path == path {
			return defaultOf(f, defs)
		}
	}
	return nil
}
