package testkube

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
)

// ReportEnv names a file the suites append one line to for every test that
// does not apply to the server they run against (NotApplicable). make
// test-versions sets it for each run and prints the lines in its summary,
// so a test left out on some version is always said, never silent.
const ReportEnv = "PODGRACE_TEST_REPORT"

// Marker starts every line NotApplicable writes, to the report and to the
// test's log.
const Marker = "not applicable on "

// The admission policy API podgrace's policy mode generates
// (docs/operate/policy.md): MutatingAdmissionPolicy in admissionregistration.k8s.io/v1.
const (
	PolicyGroupVersion = "admissionregistration.k8s.io/v1"
	PolicyResource     = "mutatingadmissionpolicies"
)

// policyGA is the first minor that serves PolicyResource in
// PolicyGroupVersion by default (the chart's admission: policy needs it too).
var policyGA = utilversion.MajorMinor(1, 36)

// Served says, from the server's discovery, whether it serves resource in
// groupVersion.
func Served(d discovery.DiscoveryInterface, groupVersion, resource string) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovery of %s: %w", groupVersion, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == resource }), nil
}

// PolicyAPI says whether the server serves MutatingAdmissionPolicy v1
// (discovery decides), and fails when that is not what its version calls
// for: served from 1.36, not before. A discovery answer that disagrees with
// the version would otherwise turn the policy tests off unseen, or on where
// they cannot pass.
func PolicyAPI(d discovery.DiscoveryInterface, gitVersion string) (bool, error) {
	served, err := Served(d, PolicyGroupVersion, PolicyResource)
	if err != nil {
		return false, err
	}
	v, err := utilversion.ParseGeneric(gitVersion)
	if err != nil {
		return false, err
	}
	if want := v.AtLeast(policyGA); served != want {
		return false, fmt.Errorf("kube-apiserver %s: discovery says %s %s served=%t, its version calls for %t",
			gitVersion, PolicyGroupVersion, PolicyResource, served, want)
	}
	return served, nil
}

// Server names the server a suite runs against in NotApplicable's lines:
// its gitVersion, and the extra flags of FlagsEnv when there are any.
func Server(gitVersion string) string {
	if f := strings.TrimSpace(os.Getenv(FlagsEnv)); f != "" {
		return gitVersion + " (" + f + ")"
	}
	return gitVersion
}

var reportMu sync.Mutex

// NotApplicable records that test t does not apply to server (Server's
// form) for reason: one line "not applicable on SERVER: TEST: REASON" in
// t's log and appended to the ReportEnv file when that is set. The caller
// then asserts what applies instead, or skips.
func NotApplicable(t testing.TB, server, reason string) {
	t.Helper()
	line := Marker + server + ": " + t.Name() + ": " + reason
	t.Log(line)
	path := os.Getenv(ReportEnv)
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", ReportEnv, err)
	}
	_, werr := f.WriteString(line + "\n")
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		t.Fatalf("%s: %v", ReportEnv, werr)
	}
}

// Skip is NotApplicable, then t.Skip with the same line.
func Skip(t testing.TB, server, reason string) {
	t.Helper()
	NotApplicable(t, server, reason)
	t.Skip(Marker + server + ": " + reason)
}
