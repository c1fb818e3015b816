package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Config is the cluster configuration: the lowest level of the precedence,
// written by the Helm chart into a ConfigMap (and read by `podgrace inject
// --config`). Every default of DESIGN §4–6 lives in Default.
type Config struct {
	// PreStopSleep is the cluster default of the prestop-sleep annotation.
	PreStopSleep string `json:"preStopSleep"`
	// ExecForm is the cluster default of the exec-form annotation.
	ExecForm bool `json:"execForm"`
	// ExtendGrace is the cluster default of the extend-grace annotation.
	ExtendGrace bool `json:"extendGrace"`
	// Sizing of an `auto` sleep: S = clamp(Ratio·T, Min, Max).
	Ratio float64         `json:"ratio"`
	Min   metav1.Duration `json:"min"`
	Max   metav1.Duration `json:"max"`
	// ShutdownBudget is the time the app needs after the sleep to stop.
	ShutdownBudget metav1.Duration `json:"shutdownBudget"`
	// HookAction: auto, sleep or exec.
	HookAction HookAction `json:"hookAction"`
	// Sidecars are container names podgrace never touches (mesh proxies and
	// agents that manage their own shutdown).
	Sidecars []string `json:"sidecars"`
	// Strict denies a pod with an invalid podgrace annotation instead of
	// warning and falling back.
	Strict bool `json:"strict"`
	// ImageInspection configures reading image configs from registries.
	ImageInspection ImageInspection `json:"imageInspection"`
}

// ImageInspection configures DESIGN §6.
type ImageInspection struct {
	// Enabled reads the image config when a container's argv comes from the image.
	Enabled bool `json:"enabled"`
	// Timeout is the deadline for all lookups of one admission.
	Timeout metav1.Duration `json:"timeout"`
	// PullSecrets lets podgrace read the pod's and its ServiceAccount's
	// imagePullSecrets (the chart then grants Secret read).
	PullSecrets bool `json:"pullSecrets"`
	// PinDigest pins a rewritten tag-referenced image to the inspected digest.
	PinDigest bool `json:"pinDigest"`
	// TagTTL is how long a tag→digest resolution is trusted.
	TagTTL metav1.Duration `json:"tagTTL"`
	// ErrorTTL is how long a failed lookup is remembered.
	ErrorTTL metav1.Duration `json:"errorTTL"`
	// CacheSize is the number of image configs kept (by digest).
	CacheSize int `json:"cacheSize"`
	// Insecure allows plain-HTTP registries (tests and local registries only).
	Insecure bool `json:"insecure"`
}

// DefaultSidecars are the containers left alone unless the config says otherwise.
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
		HookAction:     HookAuto,
		Sidecars:       append([]string(nil), DefaultSidecars...),
		ImageInspection: ImageInspection{
			Enabled:   true,
			Timeout:   metav1.Duration{Duration: 2 * time.Second},
			PinDigest: true,
			TagTTL:    metav1.Duration{Duration: time.Minute},
			ErrorTTL:  metav1.Duration{Duration: 10 * time.Second},
			CacheSize: 1000,
		},
	}
}

// ParseConfig reads a cluster config document over the defaults: a key that
// is absent keeps its default, an unknown key is an error (a typo in a Helm
// value must not silently do nothing).
func ParseConfig(data []byte) (Config, error) {
	c := Default()
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("cluster config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("cluster config: %w", err)
	}
	return c, nil
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
	return ParseConfig(data)
}

// Validate reports every invalid field of the cluster config.
func (c *Config) Validate() error {
	var errs []error
	if _, err := ParseSleep(c.PreStopSleep); err != nil {
		errs = append(errs, fmt.Errorf("preStopSleep: %w", err))
	}
	if c.Ratio < 0 || c.Ratio > 10 {
		errs = append(errs, fmt.Errorf("ratio: %v is outside [0, 10]", c.Ratio))
	}
	for name, d := range map[string]time.Duration{"min": c.Min.Duration, "max": c.Max.Duration, "shutdownBudget": c.ShutdownBudget.Duration} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", name, d))
		}
	}
	if c.Min.Duration > c.Max.Duration {
		errs = append(errs, fmt.Errorf("min (%v) is greater than max (%v)", c.Min.Duration, c.Max.Duration))
	}
	switch c.HookAction {
	case HookAuto, HookSleep, HookExec:
	default:
		errs = append(errs, fmt.Errorf("hookAction: %q is not auto, sleep or exec", c.HookAction))
	}
	if c.ImageInspection.Timeout.Duration <= 0 {
		errs = append(errs, errors.New("imageInspection.timeout: must be positive"))
	}
	if c.ImageInspection.CacheSize < 1 {
		errs = append(errs, errors.New("imageInspection.cacheSize: must be at least 1"))
	}
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

// ConfigField documents one field of the cluster config; ConfigFields feeds
// the README's and the chart's reference tables, and a test checks that it
// names every field of Config.
type ConfigField struct {
	Path string // dotted JSON path, e.g. imageInspection.timeout
	Doc  string
}

// ConfigFields lists every cluster config field in the order the README shows them.
var ConfigFields = []ConfigField{
	{"preStopSleep", "Default of `" + AnnotationPreStopSleep + "`: `auto`, a duration or `off`."},
	{"execForm", "Default of `" + AnnotationExecForm + "` (true = on)."},
	{"extendGrace", "Default of `" + AnnotationExtendGrace + "`."},
	{"ratio", "`auto` sleep = clamp(ratio × terminationGracePeriodSeconds, min, max)."},
	{"min", "Lower bound of an `auto` sleep."},
	{"max", "Upper bound of an `auto` sleep."},
	{"shutdownBudget", "Time the app needs after the sleep to stop; the grace period must cover sleep + budget."},
	{"hookAction", "`auto` (native sleep where the API server accepts a dry-run pod with it, else exec), `sleep` or `exec` (`[\"sleep\",\"S\"]`, needs a sleep binary in the image)."},
	{"sidecars", "Container names never touched."},
	{"strict", "Deny a pod with an invalid podgrace annotation instead of warning."},
	{"imageInspection.enabled", "Read the image config when a container's argv comes from its image."},
	{"imageInspection.timeout", "Deadline for all image lookups of one admission."},
	{"imageInspection.pullSecrets", "Use the pod's and its ServiceAccount's imagePullSecrets (the chart then grants Secret read)."},
	{"imageInspection.pinDigest", "Pin a rewritten tag-referenced image to the inspected digest."},
	{"imageInspection.tagTTL", "How long a tag → digest resolution is trusted."},
	{"imageInspection.errorTTL", "How long a failed lookup is remembered."},
	{"imageInspection.cacheSize", "Image configs kept in memory (by digest)."},
	{"imageInspection.insecure", "Allow plain-HTTP registries (local registries and tests only)."},
}

// ConfigTable renders ConfigFields with their defaults as a Markdown table.
func ConfigTable() string {
	d := Default()
	raw, _ := json.Marshal(&d)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	for _, f := range ConfigFields {
		var v any = m
		for _, p := range strings.Split(f.Path, ".") {
			v = v.(map[string]any)[p]
		}
		def, _ := json.Marshal(v)
		b.WriteString("| `" + f.Path + "` | `" + strings.Trim(string(def), `"`) + "` | " + f.Doc + " |\n")
	}
	return b.String()
}
