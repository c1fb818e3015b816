package policy

import (
	"regexp"
	"testing"
	"time"
)

// TestDurationRelations: a relation names only bounded durations, and
// breaking it by one second is refused.
func TestDurationRelations(t *testing.T) {
	for _, r := range durationRelations {
		for _, p := range append([]string{r.Upper}, r.Lower...) {
			if !isDuration(p) {
				t.Fatalf("relation %s ≤ %s names %s, which is no bounded duration", r.Rule(), r.Upper, p)
			}
		}
		c := Default()
		var sum time.Duration
		for _, p := range r.Lower {
			sum += durationAt(&c, p)
		}
		set := map[string]func(*Config, time.Duration){
			"max":            func(c *Config, d time.Duration) { c.Max.Duration = d },
			"maxGracePeriod": func(c *Config, d time.Duration) { c.MaxGracePeriod.Duration = d },
		}[r.Upper]
		if set == nil {
			t.Fatalf("no setter for %s: extend this test", r.Upper)
		}
		set(&c, sum+r.Margin-time.Second)
		if err := c.Validate(); err == nil || !regexp.MustCompile(regexp.QuoteMeta(r.Upper)).MatchString(err.Error()) {
			t.Errorf("%s below %s: %v", r.Upper, r.Rule(), err)
		}
	}
}

// TestChartPatterns: every bound's chart grammar takes its default and
// refuses a compound or fractional duration; a duration it takes, Go parses.
func TestChartPatterns(t *testing.T) {
	for _, b := range append(DurationBounds(), SleepBound) {
		re := regexp.MustCompile("^(" + b.Pattern() + ")$")
		if def, ok := DefaultOf(b.Path).(string); ok && b.Path != SleepBound.Path && !re.MatchString(def) {
			t.Errorf("%s: the default %q is outside the chart's grammar %s", b.Path, def, re)
		}
		for _, bad := range []string{"1m30s", "1.5s", "-1s", "5 s", "1d"} {
			if re.MatchString(bad) {
				t.Errorf("%s: the chart's grammar takes %q", b.Path, bad)
			}
		}
		for _, good := range []string{"1s", "10s", "1m"} {
			if d, _ := time.ParseDuration(good); d <= b.Max && !re.MatchString(good) {
				t.Errorf("%s: the chart's grammar refuses %q", b.Path, good)
			}
		}
	}
}
