package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseSleep(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      string
		want    Sleep
		wantErr string
	}{
		"auto":              {in: "auto", want: Sleep{Mode: SleepModeAuto}},
		"auto upper case":   {in: " AUTO ", want: Sleep{Mode: SleepModeAuto}},
		"off":               {in: "off", want: Sleep{Mode: SleepModeOff}},
		"seconds":           {in: "15s", want: Sleep{Mode: SleepModeFixed, Seconds: 15}},
		"composite":         {in: "1m30s", want: Sleep{Mode: SleepModeFixed, Seconds: 90}},
		"bare number":       {in: "20", want: Sleep{Mode: SleepModeFixed, Seconds: 20}},
		"zero is off":       {in: "0", want: Sleep{Mode: SleepModeOff}},
		"zero duration off": {in: "0s", want: Sleep{Mode: SleepModeOff}},
		"one hour":          {in: "1h", want: Sleep{Mode: SleepModeFixed, Seconds: 3600}},
		"word":              {in: "abc", wantErr: `"abc" is not a duration, "auto" or "off"`},
		"empty":             {in: "", wantErr: "is not a duration"},
		"negative":          {in: "-3s", wantErr: "outside 0s..1h0m0s"},
		"negative number":   {in: "-3", wantErr: "outside"},
		"over an hour":      {in: "61m", wantErr: "outside"},
		"huge number":       {in: "99999999999", wantErr: "outside"},
		"fraction":          {in: "1500ms", wantErr: "not a whole number of seconds"},
		"float":             {in: "1.5", wantErr: "not a duration"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSleep(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSleep(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSleep(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestSleepString(t *testing.T) {
	t.Parallel()
	for in, want := range map[Sleep]string{
		{Mode: SleepModeAuto}:               "auto",
		{Mode: SleepModeOff}:                "off",
		{Mode: SleepModeFixed, Seconds: 90}: "1m30s",
	} {
		if got := in.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", in, got, want)
		}
		if back, err := ParseSleep(want); err != nil || back != in {
			t.Errorf("ParseSleep(%q) = %+v, %v; want %+v", want, back, err, in)
		}
	}
}

func TestParseSwitchAndBool(t *testing.T) {
	t.Parallel()
	switches := map[string]any{"on": true, "off": false, "\tON\n": true, "Off": false, "yes": nil, "true": nil, "": nil, "1": nil}
	for in, want := range switches {
		got, err := ParseSwitch(in)
		if want == nil {
			if err == nil {
				t.Errorf("ParseSwitch(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want.(bool) {
			t.Errorf("ParseSwitch(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bools := map[string]any{"true": true, "false": false, "TRUE": true, "\tfalse": false, "on": nil, "yes": nil, "": nil, "0": nil}
	for in, want := range bools {
		got, err := ParseBool(in)
		if want == nil {
			if err == nil {
				t.Errorf("ParseBool(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want.(bool) {
			t.Errorf("ParseBool(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestParseContainers(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      string
		want    []string
		wantErr string
	}{
		"one":             {in: "app", want: []string{"app"}},
		"several":         {in: "app, worker ,cron", want: []string{"app", "worker", "cron"}},
		"empty items":     {in: "app,,", want: []string{"app"}},
		"empty":           {in: "", wantErr: "names no container"},
		"only commas":     {in: " , ", wantErr: "names no container"},
		"upper case":      {in: "App", wantErr: `"App" is not a container name`},
		"underscore":      {in: "my_app", wantErr: "is not a container name"},
		"too long":        {in: strings.Repeat("a", 64), wantErr: "is not a container name"},
		"one bad of many": {in: "app,bad name", wantErr: `"bad name"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseContainers(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseContainers(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("ParseContainers(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		"empty keeps every default": {in: "", check: func(t *testing.T, c Config) {
			d := Default()
			if c.Ratio != d.Ratio || c.Min != d.Min || c.Max != d.Max || c.ShutdownBudget != d.ShutdownBudget ||
				c.PreStopSleep != "auto" || !c.ExecForm || !c.ExtendGrace || c.HookAction != HookAuto || c.Strict ||
				len(c.Sidecars) != 5 || !c.ImageInspection.Enabled || !c.ImageInspection.PinDigest ||
				c.ImageInspection.Timeout.Duration != 2*time.Second || c.ImageInspection.PullSecrets {
				t.Fatalf("defaults not kept: %+v", c)
			}
		}},
		"documented defaults": {in: "", check: func(t *testing.T, c Config) {
			if c.Ratio != 0.5 || c.Min.Duration != 5*time.Second || c.Max.Duration != time.Minute || c.ShutdownBudget.Duration != 5*time.Second {
				t.Fatalf("docs/design.md §4 defaults: %+v", c)
			}
		}},
		"overrides": {in: "ratio: 0.25\nmin: 2s\nmax: 30s\nshutdownBudget: 10s\nhookAction: exec\nstrict: true\nsidecars: [envoy]\npreStopSleep: 20s\nimageInspection:\n  pullSecrets: true\n", check: func(t *testing.T, c Config) {
			if c.Ratio != 0.25 || c.Min.Duration != 2*time.Second || c.Max.Duration != 30*time.Second || c.ShutdownBudget.Duration != 10*time.Second ||
				c.HookAction != HookExec || !c.Strict || len(c.Sidecars) != 1 || !c.IsSidecar("envoy") || c.IsSidecar("istio-proxy") ||
				c.PreStopSleep != "20s" || !c.ImageInspection.PullSecrets || !c.ImageInspection.PinDigest {
				t.Fatalf("overrides not applied: %+v", c)
			}
		}},
		"sidecar and grace defaults": {in: "", check: func(t *testing.T, c Config) {
			if c.SidecarShutdownBudget.Duration != 5*time.Second || c.MaxGracePeriod.Duration != 600*time.Second || c.SleepRunToCompletion {
				t.Fatalf("docs/design.md §2, §4 defaults: %+v", c)
			}
		}},
		"sidecar and grace overrides": {in: "sidecarShutdownBudget: 0s\nmaxGracePeriod: 2m\nsleepRunToCompletion: true\n", check: func(t *testing.T, c Config) {
			if c.SidecarShutdownBudget.Duration != 0 || c.MaxGracePeriod.Duration != 2*time.Minute || !c.SleepRunToCompletion {
				t.Fatalf("overrides not applied: %+v", c)
			}
		}},
		"negative sidecar budget": {in: "sidecarShutdownBudget: -1s\n", wantErr: "sidecarShutdownBudget: -1s is negative"},
		"max grace fraction":      {in: "maxGracePeriod: 90.5s\n", wantErr: "maxGracePeriod: 1m30.5s is not a whole number of seconds"},
		"max grace too short":     {in: "maxGracePeriod: 10s\n", wantErr: "maxGracePeriod (10s) leaves no second for a sleep"},
		"unknown key":             {in: "ratoi: 0.3\n", wantErr: `unknown key "ratoi"`},
		"mis-cased key":           {in: "Ratio: 0.3\n", wantErr: `unknown key "Ratio": keys are case-sensitive, did you mean "ratio"?`},
		"mis-cased nested key":    {in: "imageInspection:\n  tagTtl: 1m\n", wantErr: `unknown key "imageInspection.tagTtl": keys are case-sensitive, did you mean "imageInspection.tagTTL"?`},
		"wrong type nested":       {in: "imageInspection:\n  pullSecrets: maybe\n", wantErr: "imageInspection.pullSecrets: got a string, want a boolean"},
		"duplicate key":           {in: "ratio: 0.3\nratio: 0.4\n", wantErr: `"ratio" already set`},
		"two documents":           {in: "ratio: 0.3\n---\nstrict: true\n", wantErr: "2 YAML documents: the config is a single document"},
		"bad duration named":      {in: "imageInspection:\n  tagTTL: 5 minutes\n", wantErr: `imageInspection.tagTTL: "5 minutes" is not a duration`},
		"number as duration":      {in: "shutdownBudget: 5\n", wantErr: "shutdownBudget: 5 is not a duration (write it as a string"},
		"wrong type named":        {in: "ratio: half\n", wantErr: "ratio: got a string, want a number"},
		"negative TTL":            {in: "imageInspection:\n  errorTTL: -10s\n", wantErr: "imageInspection.errorTTL: -10s is negative"},
		"budget of hours":         {in: "shutdownBudget: 3h\n", wantErr: "shutdownBudget: 3h0m0s is outside [0s, 10m0s]"},
		"timeout over 30s":        {in: "imageInspection:\n  timeout: 45s\n", wantErr: "imageInspection.timeout: 45s is outside (0s, 30s]"},
		"max over an hour":        {in: "max: 2h\n", wantErr: "max: 2h0m0s is outside [0s, 1h0m0s]"},
		"leading separator": {in: "---\nratio: 0.3\n", check: func(t *testing.T, c Config) {
			if c.Ratio != 0.3 {
				t.Fatalf("ratio %v", c.Ratio)
			}
		}},
		"comments only": {in: "# nothing\n", check: func(t *testing.T, c Config) {
			if c.Ratio != Default().Ratio {
				t.Fatalf("ratio %v", c.Ratio)
			}
		}},
		"bad duration":       {in: "min: soon\n", wantErr: "cluster config"},
		"min over max":       {in: "min: 2m\n", wantErr: "min (2m0s) is greater than max (1m0s)"},
		"negative budget":    {in: "shutdownBudget: -1s\n", wantErr: "shutdownBudget: -1s is negative"},
		"bad hook":           {in: "hookAction: http\n", wantErr: `hookAction: "http" is not auto, sleep or exec`},
		"bad sleep":          {in: "preStopSleep: later\n", wantErr: "preStopSleep"},
		"ratio out of range": {in: "ratio: -1\n", wantErr: "ratio"},
		"zero timeout":       {in: "imageInspection:\n  timeout: 0s\n", wantErr: "imageInspection.timeout: 0s is outside (0s, 30s]"},
		"cacheBytes small":   {in: "imageInspection:\n  cacheBytes: 64Ki\n", wantErr: "imageInspection.cacheBytes: 64Ki is outside [1Mi, 1Gi]"},
		"insecure URL":       {in: "imageInspection:\n  insecureRegistries: [\"http://reg:5000\"]\n", wantErr: `imageInspection.insecureRegistries[0]: "http://reg:5000" is not a registry`},
		"insecure wildcard":  {in: "imageInspection:\n  insecureRegistries: [\"*.corp\"]\n", wantErr: `imageInspection.insecureRegistries[0]: "*.corp" is not a registry`},
		"denied network":     {in: "imageInspection:\n  deniedNetworks: [10.0.0.0]\n", wantErr: `imageInspection.deniedNetworks[0]: "10.0.0.0" is not a CIDR`},
		"bad enforcement":    {in: "enforcement: audit\n", wantErr: `enforcement: "audit" is not mutate or warn`},
		"warn mode": {in: "enforcement: warn\n", check: func(t *testing.T, c Config) {
			t.Helper()
			if c.Enforcement != EnforcementWarn {
				t.Errorf("enforcement %q", c.Enforcement)
			}
		}},
		"not yaml":            {in: "ratio: [\n", wantErr: "cluster config"},
		"several errors join": {in: "ratio: 20\nhookAction: x\n", wantErr: "hookAction"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConfig([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestReferenceTableListsEveryKey(t *testing.T) {
	t.Parallel()
	table := ReferenceTable()
	for _, k := range []string{LabelInject, AnnotationPreStopSleep, AnnotationExecForm, AnnotationExtendGrace, AnnotationContainers, AnnotationStatus,
		ContainerAnnotation("<container>", AnnotationPreStopSleep), ContainerAnnotation("<container>", AnnotationExecForm)} {
		if !strings.Contains(table, "`"+k+"`") {
			t.Errorf("reference table lacks %s", k)
		}
	}
}

// TestDurationBoundsCoverConfig: every duration of Config has a bound, and
// the defaults lie within them.
func TestDurationBoundsCoverConfig(t *testing.T) {
	t.Parallel()
	bounded := map[string]bool{}
	for _, b := range DurationBounds() {
		bounded[b.Path] = true
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			path := prefix + name
			switch {
			case f.Type == reflect.TypeFor[metav1.Duration]():
				if !bounded[path] {
					t.Errorf("%s is a duration without a bound in durationBounds", path)
				}
				delete(bounded, path)
			case f.Type.Kind() == reflect.Struct:
				walk(path+".", f.Type)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	for p := range bounded {
		t.Errorf("durationBounds names %s, which is not a duration of Config", p)
	}
	d := Default()
	if err := d.Validate(); err != nil {
		t.Errorf("the defaults are out of bounds: %v", err)
	}
}

func TestDeclaredDrain(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		ann      map[string]string
		want     int64
		declared bool
		warns    int
	}{
		"none":              {nil, 0, false, 0},
		"istio yaml":        {map[string]string{AnnotationIstioProxyConfig: "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 20s\n"}, 20, true, 0},
		"istio json":        {map[string]string{AnnotationIstioProxyConfig: `{"terminationDrainDuration":"1m"}`}, 60, true, 0},
		"istio fraction up": {map[string]string{AnnotationIstioProxyConfig: `terminationDrainDuration: 2.1s`}, 3, true, 0},
		"istio other keys":  {map[string]string{AnnotationIstioProxyConfig: `concurrency: 2`}, 0, false, 0},
		"istio bad":         {map[string]string{AnnotationIstioProxyConfig: `terminationDrainDuration: soon`}, 0, false, 1},
		"istio not yaml":    {map[string]string{AnnotationIstioProxyConfig: `{[`}, 0, false, 1},
		"linkerd":           {map[string]string{AnnotationLinkerdWaitBeforeExit: "12"}, 12, true, 0},
		"linkerd bad":       {map[string]string{AnnotationLinkerdWaitBeforeExit: "12s"}, 0, false, 1},
		"both: the longer":  {map[string]string{AnnotationLinkerdWaitBeforeExit: "12", AnnotationIstioProxyConfig: "terminationDrainDuration: 7s"}, 12, true, 0},
	}
	for name, tc := range cases {
		got, declared, warns := DeclaredDrain(tc.ann)
		if got != tc.want || declared != tc.declared || len(warns) != tc.warns {
			t.Errorf("%s: DeclaredDrain = %d, %t, %q; want %d, %t and %d warnings", name, got, declared, warns, tc.want, tc.declared, tc.warns)
		}
	}
}
