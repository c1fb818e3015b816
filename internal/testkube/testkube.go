// Package testkube holds what the API-server test suites (test/integration,
// test/chart) need to run against several Kubernetes versions (make
// test-versions): the extra kube-apiserver flags of a run and what the
// server's version and flags say podgrace must observe.
package testkube

import (
	"fmt"
	"os"
	"strings"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// FlagsEnv names the variable with extra kube-apiserver flags for the
// suites' envtest control plane, space separated --name=value pairs (make
// test-versions sets --feature-gates=PodLifecycleSleepAction=false on one
// 1.30 run).
const FlagsEnv = "PODGRACE_TEST_APISERVER_FLAGS"

// Flags parses FlagsEnv into name → value.
func Flags() (map[string]string, error) {
	out := map[string]string{}
	for f := range strings.FieldsSeq(os.Getenv(FlagsEnv)) {
		name, value, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok || !strings.HasPrefix(f, "--") {
			return nil, fmt.Errorf("%s: %q is not --name=value", FlagsEnv, f)
		}
		out[name] = value
	}
	return out, nil
}

// Configure adds FlagsEnv's flags to the environment's kube-apiserver.
func Configure(env *envtest.Environment) error {
	flags, err := Flags()
	if err != nil {
		return err
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	for name, value := range flags {
		args.Set(name, value)
	}
	return nil
}

// SleepActionOn says whether a kube-apiserver of gitVersion started with
// flags serves the native preStop sleep action: the PodLifecycleSleepAction
// gate is alpha (off) in 1.29, on by default from 1.30, GA (always on) from
// 1.34; --feature-gates may turn it on or off before that.
func SleepActionOn(gitVersion string, flags map[string]string) (bool, error) {
	v, err := utilversion.ParseGeneric(gitVersion)
	if err != nil {
		return false, err
	}
	if v.LessThan(utilversion.MajorMinor(1, 29)) {
		return false, nil
	}
	if v.AtLeast(utilversion.MajorMinor(1, 34)) {
		return true, nil
	}
	on := v.AtLeast(utilversion.MajorMinor(1, 30))
	for gate := range strings.SplitSeq(flags["feature-gates"], ",") {
		switch strings.TrimSpace(gate) {
		case "PodLifecycleSleepAction=true":
			on = true
		case "PodLifecycleSleepAction=false":
			on = false
		}
	}
	return on, nil
}
