package chart_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/policy"
)

// boundCase is one config value out of a bound, and the key the refusal
// must name.
type boundCase struct {
	name   string
	key    string
	values map[string]any // config keys (dotted) → value
}

// outOfBounds derives from pkg/policy's bounds one value past each of them:
// above each duration's maximum (in the chart's grammar, so that the
// template's check, not the schema, refuses it), zero where zero is
// excluded, a fraction where whole seconds are required, each number past
// each end, each quantity past each end (in the chart's grammar, so that the
// template refuses it, and as a number of bytes, which the schema refuses),
// each relation between durations broken, and the preStopSleep range as
// seconds and as a duration.
func outOfBounds() []boundCase {
	var cases []boundCase
	for _, b := range policy.DurationBounds() {
		cases = append(cases, boundCase{b.Path + " above max", b.Path, map[string]any{b.Path: fmt.Sprintf("%ds", int64(b.Max/time.Second)+1)}})
		if b.MinExclusive {
			cases = append(cases, boundCase{b.Path + " at an excluded min", b.Path, map[string]any{b.Path: "0s"}})
		}
		if b.WholeSeconds {
			cases = append(cases, boundCase{b.Path + " fraction", b.Path, map[string]any{b.Path: "1500ms"}})
		}
	}
	for _, b := range policy.NumberBounds() {
		lo, hi := b.Min-0.5, b.Max+0.5
		if b.Integer {
			lo, hi = b.Min-1, b.Max+1
		}
		cases = append(cases,
			boundCase{b.Path + " below min", b.Path, map[string]any{b.Path: lo}},
			boundCase{b.Path + " above max", b.Path, map[string]any{b.Path: hi}})
	}
	for _, b := range policy.QuantityBounds() {
		cases = append(cases,
			boundCase{b.Path + " below min", b.Path, map[string]any{b.Path: fmt.Sprintf("%dKi", b.Min/1024-1)}},
			boundCase{b.Path + " above max", b.Path, map[string]any{b.Path: fmt.Sprintf("%dMi", b.Max/(1<<20)+1)}},
			boundCase{b.Path + " bytes below min", b.Path, map[string]any{b.Path: float64(b.Min - 1)}},
			boundCase{b.Path + " bytes above max", b.Path, map[string]any{b.Path: float64(b.Max + 1)}})
	}
	for _, r := range policy.DurationRelations() {
		v := map[string]any{}
		sum := r.Margin
		for _, p := range r.Lower {
			d, _ := time.ParseDuration(fmt.Sprint(policy.DefaultOf(p)))
			sum += d
		}
		v[r.Upper] = fmt.Sprintf("%ds", int64((sum-time.Second)/time.Second))
		cases = append(cases, boundCase{r.Rule() + " > " + r.Upper, r.Upper, v})
	}
	s := policy.SleepBound
	cases = append(cases,
		boundCase{"preStopSleep seconds above max", s.Path, map[string]any{s.Path: fmt.Sprint(int64(s.Max/time.Second) + 1)}},
		boundCase{"preStopSleep duration above max", s.Path, map[string]any{s.Path: fmt.Sprintf("%dm", int64(s.Max/time.Minute)+1)}})
	return cases
}

// configValues nests dotted config keys under `config`.
func configValues(flat map[string]any) map[string]any {
	cfg := map[string]any{}
	for k, v := range flat {
		m := cfg
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			if m[p] == nil {
				m[p] = map[string]any{}
			}
			m = m[p].(map[string]any)
		}
		m[parts[len(parts)-1]] = v
	}
	return map[string]any{"config": cfg}
}

// TestChartRefusesOutOfBounds: for one value past each bound of the cluster
// config, the binary's loader refuses it, and so does Helm's renderer (the
// schema or a template's fail), naming the key: `helm install` fails instead
// of a webhook that crash-loops (and, under failurePolicy Ignore, admits
// every pod unmutated).
func TestChartRefusesOutOfBounds(t *testing.T) {
	t.Parallel()
	dir := chartDir(t)
	for _, c := range outOfBounds() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			vals := configValues(c.values)
			doc, err := sigsyaml.Marshal(vals["config"])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := policy.ParseConfig(doc); err == nil {
				t.Fatalf("the binary accepts %s: not out of bounds", doc)
			}
			_, err = chart.Render(dir, rel, vals)
			switch {
			case err == nil:
				t.Errorf("the chart accepts %v", c.values)
			case !strings.Contains(err.Error(), "config."+c.key) && !strings.Contains(err.Error(), "/config/"+strings.ReplaceAll(c.key, ".", "/")):
				t.Errorf("the chart refuses %v without naming config.%s: %v", c.values, c.key, err)
			default:
				t.Logf("refused: %v", err)
			}
		})
	}
}

// TestChartAcceptsOnlyWhatBinaryAccepts, a property test: random config
// values (in and out of the chart's grammar and of each range) that the chart
// renders are accepted by the binary's loader, read from the rendered
// ConfigMap as the webhook reads it.
func TestChartAcceptsOnlyWhatBinaryAccepts(t *testing.T) {
	t.Parallel()
	dir := chartDir(t)
	rng := rand.New(rand.NewPCG(21, 1))
	var paths []string
	for _, b := range policy.DurationBounds() {
		paths = append(paths, b.Path)
	}
	for _, b := range policy.NumberBounds() {
		paths = append(paths, b.Path)
	}
	for _, b := range policy.QuantityBounds() {
		paths = append(paths, b.Path)
	}
	paths = append(paths, policy.SleepBound.Path)
	accepted, refused := 0, 0
	for i := range 200 {
		flat := map[string]any{}
		for range 1 + rng.IntN(2) {
			p := paths[rng.IntN(len(paths))]
			flat[p] = randomValue(rng, p)
		}
		r, err := chart.Render(dir, rel, configValues(flat))
		if err != nil {
			refused++
			continue
		}
		accepted++
		var cm corev1.ConfigMap
		if err := chart.Into(r.Find("ConfigMap", "podgrace"), &cm); err != nil {
			t.Fatal(err)
		}
		if _, err := policy.ParseConfig([]byte(cm.Data["config.yaml"])); err != nil {
			t.Errorf("case %d: the chart renders %v, the binary refuses it: %v", i, flat, err)
		}
	}
	t.Logf("%d configs rendered, %d refused", accepted, refused)
	if accepted < 30 || refused < 30 {
		t.Errorf("%d accepted, %d refused: the generator no longer explores both sides", accepted, refused)
	}
}

// randomValue is a value for a config key: mostly of its type, near and past
// its bounds, sometimes of another form.
func randomValue(rng *rand.Rand, path string) any {
	for _, b := range policy.NumberBounds() {
		if b.Path == path {
			switch rng.IntN(4) {
			case 0:
				return "x"
			case 1:
				if b.Integer {
					return float64(int64(b.Max) + rng.Int64N(3) - 1)
				}
				return b.Max + rng.Float64() - 0.5
			}
			if b.Integer {
				return float64(rng.Int64N(3000) - 5)
			}
			return math.Round((rng.Float64()*12-1)*100) / 100
		}
	}
	for _, b := range policy.QuantityBounds() {
		if b.Path == path {
			ns := []int64{0, 1, 1023, 1024, 1025, 16, 1 << 20, 1<<20 - 1, 1<<20 + 1, 1 << 30, 1<<30 + 1}
			n := ns[rng.IntN(len(ns))]
			switch rng.IntN(6) {
			case 0:
				return float64(n)
			case 1:
				return "1.5Mi"
			}
			return fmt.Sprintf("%d%s", n, []string{"", "Ki", "Mi", "Gi", "M"}[rng.IntN(5)])
		}
	}
	units := []string{"s", "s", "s", "m", "m", "h", "ms", "", "us", "m30s"}
	ns := []int64{0, 1, 2, 5, 9, 10, 30, 30, 59, 60, 61, 599, 600, 601, 3600, 3601, 86400, 86401, 1500, 1000000}
	n := ns[rng.IntN(len(ns))]
	v := fmt.Sprintf("%d%s", n, units[rng.IntN(len(units))])
	switch rng.IntN(10) {
	case 0:
		return "auto"
	case 1:
		return "off"
	case 2:
		return "-" + v
	case 3:
		return "1.5s"
	}
	return v
}
