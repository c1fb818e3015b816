package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// SleepMode is how the preStop sleep is chosen.
type SleepMode int

const (
	// SleepModeAuto sizes the sleep from the grace period (docs/design.md §4).
	SleepModeAuto SleepMode = iota
	// SleepModeFixed uses the duration as written.
	SleepModeFixed
	// SleepModeOff adds no sleep.
	SleepModeOff
)

// Sleep is a parsed prestop-sleep value.
type Sleep struct {
	Mode SleepMode
	// Seconds is the fixed sleep, for SleepModeFixed.
	Seconds int64
}

func (s Sleep) String() string {
	switch s.Mode {
	case SleepModeOff:
		return SleepOff
	case SleepModeFixed:
		return (time.Duration(s.Seconds) * time.Second).String()
	default:
		return SleepAuto
	}
}

// maxSleep bounds an explicit sleep: anything longer is a typo, not a drain.
const maxSleep = time.Hour

// MaxSleep is maxSleep for the generated admission policy's parsers.
const MaxSleep = maxSleep

// ParseSleep parses `auto`, `off`, a Go duration (`15s`, `1m30s`) or a bare
// number of seconds (`20`). The preStop sleep action counts whole seconds, so a
// duration that is not a whole number of seconds is rejected rather than
// silently rounded; `0` means off.
func ParseSleep(v string) (Sleep, error) {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case SleepAuto:
		return Sleep{Mode: SleepModeAuto}, nil
	case SleepOff:
		return Sleep{Mode: SleepModeOff}, nil
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > int64(maxSleep/time.Second) {
			return Sleep{}, fmt.Errorf("%q is outside 0s..%v", v, maxSleep)
		}
		d = time.Duration(n) * time.Second
	} else {
		d, err = time.ParseDuration(v)
		if err != nil {
			return Sleep{}, fmt.Errorf("%q is not a duration, %q or %q", v, SleepAuto, SleepOff)
		}
	}
	if d < 0 || d > maxSleep {
		return Sleep{}, fmt.Errorf("%q is outside 0s..%v", v, maxSleep)
	}
	if d%time.Second != 0 {
		return Sleep{}, fmt.Errorf("%q is not a whole number of seconds", v)
	}
	if d == 0 {
		return Sleep{Mode: SleepModeOff}, nil
	}
	return Sleep{Mode: SleepModeFixed, Seconds: int64(d / time.Second)}, nil
}

// ParseSwitch parses the exec-form values `on` and `off`.
func ParseSwitch(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case SwitchOn:
		return true, nil
	case SwitchOff:
		return false, nil
	}
	return false, fmt.Errorf("%q is not %q or %q", v, SwitchOn, SwitchOff)
}

// ParseBool parses the extend-grace values `true` and `false`.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not %q or %q", v, "true", "false")
}

// ParseContainers parses the containers annotation: a comma separated list
// of container names (DNS labels). Empty items are ignored; an invalid name
// is an error.
func ParseContainers(v string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a container name", n)
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%q names no container", v)
	}
	return names, nil
}
