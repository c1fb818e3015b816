package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// HookAction says how the preStop sleep is expressed.
type HookAction string

const (
	// HookAuto picks HookSleep or HookExec at start by asking the API server
	// (a dry-run pod with a preStop sleep hook; pkg/webhook.HookProbe).
	HookAuto HookAction = "auto"
	// HookSleep is the native lifecycle.preStop.sleep action (on by default
	// since Kubernetes 1.30, GA in 1.34): it needs no sleep binary in the image.
	HookSleep HookAction = "sleep"
	// HookExec is `exec: ["sleep", "S"]`, for API servers that reject the
	// native action; the image must then ship a sleep binary.
	HookExec HookAction = "exec"
)

// Enforcement says what the webhook does with its result.
type Enforcement string

const (
	// EnforcementMutate patches the pod (the default).
	EnforcementMutate Enforcement = "mutate"
	// EnforcementWarn patches nothing: the result comes back as admission
	// warnings, a log line and metrics, the first step of a careful rollout.
	EnforcementWarn Enforcement = "warn"
)

// Config is the cluster configuration: the lowest level of the precedence,
// written by the Helm chart into a ConfigMap (and read by `podgrace inject
// --config`). Each field is documented once, in ConfigFields
// (configfields.go), with its schema; its default is in Default.
type Config struct {
	PreStopSleep          string          `json:"preStopSleep"`
	ExecForm              bool            `json:"execForm"`
	ExtendGrace           bool            `json:"extendGrace"`
	Ratio                 float64         `json:"ratio"`
	Min                   metav1.Duration `json:"min"`
	Max                   metav1.Duration `json:"max"`
	ShutdownBudget        metav1.Duration `json:"shutdownBudget"`
	SidecarShutdownBudget metav1.Duration `json:"sidecarShutdownBudget"`
	MaxGracePeriod        metav1.Duration `json:"maxGracePeriod"`
	SleepRunToCompletion  bool            `json:"sleepRunToCompletion"`
	HookAction            HookAction      `json:"hookAction"`
	Sidecars              []string        `json:"sidecars"`
	Strict                bool            `json:"strict"`
	Enforcement           Enforcement     `json:"enforcement"`
	ImageInspection       ImageInspection `json:"imageInspection"`
}

// ImageInspection configures docs/design.md §6 (fields documented in ConfigFields).
type ImageInspection struct {
	Enabled     bool            `json:"enabled"`
	Timeout     metav1.Duration `json:"timeout"`
	PullSecrets bool            `json:"pullSecrets"`
	PinDigest   bool            `json:"pinDigest"`
	TagTTL      metav1.Duration `json:"tagTTL"`
	ErrorTTL    metav1.Duration `json:"errorTTL"`
	CacheSize   int             `json:"cacheSize"`
	// CacheBytes bounds the memory the cached configs hold.
	CacheBytes resource.Quantity `json:"cacheBytes"`
	// The network rules of docs/operate/security.md: which registries may be asked
	// (empty: any), which never, which over plain HTTP, and which private
	// networks are refused on top of the always refused loopback,
	// link-local and metadata addresses.
	AllowedRegistries  []string `json:"allowedRegistries"`
	DeniedRegistries   []string `json:"deniedRegistries"`
	InsecureRegistries []string `json:"insecureRegistries"`
	DeniedNetworks     []string `json:"deniedNetworks"`
}

// DefaultSidecars is the one list of the default sidecars (docs/design.md
// §2); the chart's values.yaml is generated from it.
var DefaultSidecars = []string{"istio-proxy", "linkerd-proxy", "daprd", "vault-agent", "cloud-sql-proxy"}

// Default returns the cluster configuration with every documented default.
func Default() Config {
	return Config{
		PreStopSleep:   SleepAuto,
		ExecForm:       true,
		ExtendGrace:    true,
		Ratio:          0.5,
		Min:            metav1.Duration{Duration: 5 * time.Second},
		Max:            metav1.Duration{Duration: 60 * time.Second},
		ShutdownBudget: metav1.Duration{Duration: 5 * time.Second},
		// A proxy's own drain; Istio's and Linkerd's declared drains replace it.
		SidecarShutdownBudget: metav1.Duration{Duration: 5 * time.Second},
		// cluster-autoscaler's default --max-graceful-termination-sec.
		MaxGracePeriod: metav1.Duration{Duration: 600 * time.Second},
		HookAction:     HookAuto,
		Enforcement:    EnforcementMutate,
		Sidecars:       append([]string(nil), DefaultSidecars...),
		ImageInspection: ImageInspection{
			Enabled:    true,
			Timeout:    metav1.Duration{Duration: 2 * time.Second},
			PinDigest:  true,
			TagTTL:     metav1.Duration{Duration: time.Minute},
			ErrorTTL:   metav1.Duration{Duration: 10 * time.Second},
			CacheSize:  1000,
			CacheBytes: resource.MustParse("16Mi"),
			// Empty, not nil: the chart's values show `[]`.
			AllowedRegistries:  []string{},
			DeniedRegistries:   []string{},
			InsecureRegistries: []string{},
			DeniedNetworks:     []string{},
		},
	}
}

// ParseConfig reads a cluster config document over the defaults: a key that
// is absent keeps its default; an unknown key (keys are case-sensitive, as
// the API server's are), a duplicate key, a second YAML document or a value
// out of bounds is an error that names it: a typo in a Helm value must not
// silently do nothing.
func ParseConfig(data []byte) (Config, error) {
	c := Default()
	if err := decodeConfig(data, &c); err != nil {
		return Config{}, fmt.Errorf("cluster config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("cluster config: %w", err)
	}
	return c, nil
}

// decodeConfig decodes one YAML document into c, strictly.
func decodeConfig(data []byte, c *Config) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	docs := 0
	for {
		var n yamlv3.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("invalid YAML: %w", err)
		}
		if len(n.Content) > 0 && n.Content[0].Tag != "!!null" {
			docs++
		}
	}
	if docs > 1 {
		return fmt.Errorf("%d YAML documents: the config is a single document (remove the `---` separators)", docs)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil
	}
	strict, err := kjson.UnmarshalStrict(js, c, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return valueError(js, err)
	}
	errs := make([]error, 0, len(strict))
	for _, e := range strict {
		errs = append(errs, keyError(e))
	}
	return errors.Join(errs...)
}

// keyError says which key is unknown and, when it differs only in case from
// a real one, which one was meant.
func keyError(err error) error {
	msg := err.Error()
	const unknown = `unknown field "`
	i := strings.Index(msg, unknown)
	if i < 0 {
		return err
	}
	path := strings.TrimSuffix(msg[i+len(unknown):], `"`)
	for _, f := range ConfigFields {
		if strings.EqualFold(f.Path, path) {
			return fmt.Errorf("unknown key %q: keys are case-sensitive, did you mean %q?", path, f.Path)
		}
	}
	return fmt.Errorf("unknown key %q", path)
}

// valueError names the key whose value has the wrong type or format:
// encoding/json reports a bad duration without saying whose it is.
func valueError(js []byte, err error) error {
	var m map[string]any
	if json.Unmarshal(js, &m) == nil {
		for _, b := range durationBounds {
			v, ok := lookupPath(m, b.Path)
			if !ok {
				continue
			}
			s, isString := v.(string)
			if !isString {
				return fmt.Errorf("%s: %v is not a duration (write it as a string: 30s, 2m)", b.Path, v)
			}
			if _, perr := time.ParseDuration(s); perr != nil {
				return fmt.Errorf("%s: %q is not a duration (30s, 2m, 1h30m)", b.Path, s)
			}
		}
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return fmt.Errorf("%s: got a %s, want %s", te.Field, te.Value, jsonKind(te.Type))
	}
	return err
}

// jsonKind names a Go type as YAML users know it.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	default:
		return "a number"
	}
}

func lookupPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// LoadConfig reads the cluster config from a file; an empty path gives Default.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// DurationBound is the range a duration of the cluster config must lie in.
// The bounds are sanity limits: beyond them a value is a typo (a budget of
// hours, a negative TTL), not a tuning.
type DurationBound struct {
	// Path is the key, dotted as in ConfigFields.
	Path string
	// Min and Max are inclusive, unless MinExclusive.
	Min, Max     time.Duration
	MinExclusive bool
	// WholeSeconds: the value counts whole seconds (a grace period); a
	// fraction would be silently rounded.
	WholeSeconds bool
	get          func(*Config) time.Duration
}

// durationBounds lists every duration of Config; TestDurationBoundsCoverConfig
// fails if a Duration field is missing here. A new duration adds a row.
var durationBounds = []DurationBound{
	{Path: "min", WholeSeconds: true, Max: maxSleep, get: func(c *Config) time.Duration { return c.Min.Duration }},
	{Path: "max", WholeSeconds: true, Max: maxSleep, get: func(c *Config) time.Duration { return c.Max.Duration }},
	{Path: "shutdownBudget", WholeSeconds: true, Max: 10 * time.Minute, get: func(c *Config) time.Duration { return c.ShutdownBudget.Duration }},
	{Path: "sidecarShutdownBudget", WholeSeconds: true, Max: 10 * time.Minute, get: func(c *Config) time.Duration { return c.SidecarShutdownBudget.Duration }},
	// A cap on the grace period the pod ends with: a day is far beyond any drain.
	{Path: "maxGracePeriod", Max: 24 * time.Hour, WholeSeconds: true, get: func(c *Config) time.Duration { return c.MaxGracePeriod.Duration }},
	// The API server waits at most 30s for a webhook.
	{Path: "imageInspection.timeout", Max: 30 * time.Second, MinExclusive: true, get: func(c *Config) time.Duration { return c.ImageInspection.Timeout.Duration }},
	{Path: "imageInspection.tagTTL", Max: 24 * time.Hour, get: func(c *Config) time.Duration { return c.ImageInspection.TagTTL.Duration }},
	{Path: "imageInspection.errorTTL", Max: time.Hour, get: func(c *Config) time.Duration { return c.ImageInspection.ErrorTTL.Duration }},
}

// DurationBounds returns the bounds of every duration of the cluster config.
func DurationBounds() []DurationBound { return slices.Clone(durationBounds) }

// Range renders the bound as the docs and error messages write it.
func (b *DurationBound) Range() string {
	lo := "[" + b.Min.String()
	if b.MinExclusive {
		lo = "(" + b.Min.String()
	}
	return lo + ", " + b.Max.String() + "]"
}

// Validate reports every invalid field of the cluster config.
func (c *Config) Validate() error {
	var errs []error
	if _, err := ParseSleep(c.PreStopSleep); err != nil {
		errs = append(errs, fmt.Errorf("preStopSleep: %w", err))
	}
	for i := range numberBounds {
		b := &numberBounds[i]
		if v := b.get(c); v < b.Min || v > b.Max {
			errs = append(errs, fmt.Errorf("%s: %v is outside %s", b.Path, v, b.Range()))
		}
	}
	for i := range durationBounds {
		b := &durationBounds[i]
		d := b.get(c)
		switch {
		case d < 0:
			errs = append(errs, fmt.Errorf("%s: %v is negative", b.Path, d))
		case d < b.Min || (b.MinExclusive && d <= b.Min) || d > b.Max:
			errs = append(errs, fmt.Errorf("%s: %v is outside %s", b.Path, d, b.Range()))
		case b.WholeSeconds && d%time.Second != 0:
			errs = append(errs, fmt.Errorf("%s: %v is not a whole number of seconds", b.Path, d))
		}
	}
	for i := range durationRelations {
		if err := durationRelations[i].check(c); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.HookAction {
	case HookAuto, HookSleep, HookExec:
	default:
		errs = append(errs, fmt.Errorf("hookAction: %q is not auto, sleep or exec", c.HookAction))
	}
	switch c.Enforcement {
	case EnforcementMutate, EnforcementWarn:
	default:
		errs = append(errs, fmt.Errorf("enforcement: %q is not mutate or warn", c.Enforcement))
	}
	for i := range quantityBounds {
		if err := quantityBounds[i].check(c); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.ImageInspection.validateNetwork()...)
	return errors.Join(errs...)
}

// IsSidecar reports whether the config lists name as a sidecar.
func (c *Config) IsSidecar(name string) bool {
	for _, s := range c.Sidecars {
		if s == name {
			return true
		}
	}
	return false
}

// DurationBoundsTable renders the bounds as docs/reference/cli.md shows them.
func DurationBoundsTable() string {
	var b strings.Builder
	b.WriteString("| key | bounds |\n|---|---|\n")
	for i := range durationBounds {
		b.WriteString("| `" + durationBounds[i].Path + "` | " + durationBounds[i].Range() + " |\n")
	}
	return b.String()
}
