package policy

import (
	"errors"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// HookAction says how the preStop sleep is expressed.
type HookAction string

const (
	// HookAuto picks HookSleep or HookExec from the API server's version at start.
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
	Insecure    bool            `json:"insecure"`
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
	for name, d := range map[string]time.Duration{"min": c.Min.Duration, "max": c.Max.Duration, "shutdownBudget": c.ShutdownBudget.Duration,
		"sidecarShutdownBudget": c.SidecarShutdownBudget.Duration, "maxGracePeriod": c.MaxGracePeriod.Duration} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", name, d))
		}
	}
	// The grace period counts whole seconds: a cap with a fraction would be
	// silently rounded, and one that leaves no second for a sleep after both
	// budgets makes every sleep impossible.
	if c.MaxGracePeriod.Duration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("maxGracePeriod: %v is not a whole number of seconds", c.MaxGracePeriod.Duration))
	}
	if floor := c.ShutdownBudget.Duration + c.SidecarShutdownBudget.Duration + time.Second; c.MaxGracePeriod.Duration < floor {
		errs = append(errs, fmt.Errorf("maxGracePeriod (%v) leaves no second for a sleep: it must be at least shutdownBudget + sidecarShutdownBudget + 1s (%v)", c.MaxGracePeriod.Duration, floor))
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
