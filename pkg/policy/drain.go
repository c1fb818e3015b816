package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// maxDrain bounds a declared drain, like an explicit sleep: more is a typo.
const maxDrain = time.Hour

// MaxDrain is maxDrain for the generated admission policy's parsers.
const MaxDrain = maxDrain

// DeclaredDrain reads the drain a pod declares for its mesh proxy: Istio's
// terminationDrainDuration (in the proxy.istio.io/config annotation, YAML or
// JSON) and Linkerd's proxy-wait-before-exit-seconds. It returns the longer,
// in whole seconds rounded up, and whether any was declared. An unreadable
// value is not declared and comes back as a warning: these keys belong to
// the mesh, so even strict mode does not deny a pod over them.
func DeclaredDrain(ann map[string]string) (seconds int64, declared bool, warnings []string) {
	if raw, ok := ann[AnnotationIstioProxyConfig]; ok {
		var pc struct {
			TerminationDrainDuration *string `json:"terminationDrainDuration"`
		}
		switch err := yaml.Unmarshal([]byte(raw), &pc); {
		case err != nil:
			warnings = append(warnings, fmt.Sprintf("podgrace: %s is not a YAML or JSON ProxyConfig; its drain is ignored", AnnotationIstioProxyConfig))
		case pc.TerminationDrainDuration != nil:
			v := strings.TrimSpace(*pc.TerminationDrainDuration)
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > maxDrain {
				warnings = append(warnings, fmt.Sprintf("podgrace: %s terminationDrainDuration %q is not a duration in 0s..%v; ignored", AnnotationIstioProxyConfig, v, maxDrain))
				break
			}
			seconds, declared = max(seconds, int64(math.Ceil(d.Seconds()))), true
		}
	}
	if raw, ok := ann[AnnotationLinkerdWaitBeforeExit]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil || n < 0 || n > int64(maxDrain/time.Second) {
			warnings = append(warnings, fmt.Sprintf("podgrace: %s=%q is not a number of seconds in 0..%d; ignored", AnnotationLinkerdWaitBeforeExit, raw, int64(maxDrain/time.Second)))
		} else {
			seconds, declared = max(seconds, n), true
		}
	}
	return seconds, declared, warnings
}
