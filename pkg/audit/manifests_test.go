package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/internal/imagetest"
	"github.com/podgrace/podgrace/pkg/imageconfig"
	"github.com/podgrace/podgrace/pkg/policy"
)

func fixture(t *testing.T, name string) Source {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return Source{Name: name, Data: data}
}

func values(t *testing.T, text string) (*ChartValues, *policy.Config) {
	t.Helper()
	v, cfg, err := ParseValues([]byte(text), "podgrace")
	if err != nil {
		t.Fatal(err)
	}
	return v, cfg
}

func byName(rep *Report) map[string]*Workload {
	out := map[string]*Workload{}
	for i := range rep.Workloads {
		w := &rep.Workloads[i]
		out[w.Namespace+"/"+w.Kind+"/"+w.Name] = w
	}
	return out
}

func riskTypes(w *Workload, remaining bool) []string {
	var out []string
	for _, r := range w.Risks {
		if !remaining || r.Remains {
			out = append(out, r.Type+"("+r.Container+")")
		}
	}
	return out
}

// TestManifests audits testdata/shop.yaml with the chart's default values:
// every workload kind, a Service, an opted-out pod, a namespace that is not
// opted in and a malformed document that does not stop the scan.
func TestManifests(t *testing.T) {
	v, cfg := values(t, "webhook:\n  mode: opt-in\n")
	rep := Manifests(context.Background(), []Source{fixture(t, "shop.yaml")}, ManifestOptions{
		Env: Env{Config: cfg, HookAction: policy.HookSleep}, Values: v,
	})
	got := byName(rep)
	type want struct {
		served  Served
		changes []string
		risks   []string // remaining
		fixed   []string
		errs    bool
	}
	cases := map[string]want{
		"shop/Deployment/web": {served: ServedYes,
			changes: []string{"add preStop sleep 15s to app", "drop the shell of app (exec form)"},
			risks:   []string{"no-readiness-probe(app)"},
			fixed:   []string{"shell-pid1(app)", "no-prestop-sleep(app)"}},
		// podgrace keeps an existing hook: the short grace period remains.
		"shop/StatefulSet/db": {served: ServedYes, changes: []string{}, risks: []string{"grace-too-short(db)"}},
		// A run-to-completion pod gets no sleep; a pipeline keeps its shell.
		"shop/CronJob/report": {served: ServedYes, changes: []string{}, risks: []string{"shell-pid1(report)"}},
		// Opted out: what podgrace would do does not happen.
		"shop/Pod/debug":        {served: ServedNo, changes: []string{"add preStop sleep 15s to debug", "drop the shell of debug (exec form)"}, risks: []string{"shell-pid1(debug)"}},
		"shop/DaemonSet/broken": {served: ServedUnknown, changes: []string{}, errs: true},
		"legacy/Deployment/api": {served: ServedNo, changes: []string{"add preStop sleep 15s to api"}},
	}
	if len(got) != len(cases) {
		t.Errorf("workloads %v, want %d", keysOf(got), len(cases))
	}
	for name, c := range cases {
		w := got[name]
		if w == nil {
			t.Errorf("%s: missing", name)
			continue
		}
		if w.Served != c.served {
			t.Errorf("%s: served %s (%s), want %s", name, w.Served, w.ServedReason, c.served)
		}
		if !slices.Equal(w.Changes, c.changes) {
			t.Errorf("%s: changes %q, want %q", name, w.Changes, c.changes)
		}
		if r := riskTypes(w, true); !slices.Equal(r, c.risks) {
			t.Errorf("%s: remaining risks %q, want %q", name, r, c.risks)
		}
		for _, f := range c.fixed {
			if !slices.ContainsFunc(w.Risks, func(r Risk) bool { return r.Type+"("+r.Container+")" == f && r.FixedByPodgrace && !r.Remains }) {
				t.Errorf("%s: risk %s not reported as fixed: %+v", name, f, w.Risks)
			}
		}
		if (len(w.Errors) > 0) != c.errs {
			t.Errorf("%s: errors %q", name, w.Errors)
		}
	}
	if rep.Summary.WithRisks != 4 || rep.Summary.Served != 3 || rep.Summary.Errors != 1 {
		t.Errorf("summary %+v", rep.Summary)
	}
}

// TestManifestsServedByValues: cluster-wide mode, excluded namespaces,
// extra namespace expressions and CEL matchConditions from the values.
func TestManifestsServedByValues(t *testing.T) {
	src := Source{Name: "pods.yaml", Data: []byte(`apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-a}
spec: {containers: [{name: app, image: x, command: [/app]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: batch, namespace: team-a, labels: {batch: "true"}}
spec: {containers: [{name: app, image: x, command: [/app]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mirror, namespace: team-a, annotations: {kubernetes.io/config.mirror: 4f1d2c3b}}
spec: {containers: [{name: app, image: x, command: [/app]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: monitoring}
spec: {containers: [{name: app, image: x, command: [/app]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: no-team}
spec: {containers: [{name: app, image: x, command: [/app]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: podgrace}
spec: {containers: [{name: app, image: x, command: [/app]}]}
`)}
	v, cfg := values(t, `webhook:
  mode: cluster-wide
  excludeNamespaces: [monitoring]
  namespaceSelectorExpressions: [{key: team, operator: Exists}]
  matchConditions:
    - name: not-batch
      expression: "!has(object.metadata.labels) || !('batch' in object.metadata.labels)"
`)
	rep := Manifests(context.Background(), []Source{src}, ManifestOptions{Env: Env{Config: cfg, HookAction: policy.HookSleep}, Values: v,
		NamespaceLabels: map[string]string{"team": "b"}})
	got := byName(rep)
	for name, want := range map[string]Served{
		"team-a/Pod/app":     ServedYes,
		"team-a/Pod/batch":   ServedNo, // the matchCondition
		"team-a/Pod/mirror":  ServedNo, // a mirror pod: podgrace's handler leaves it alone
		"monitoring/Pod/app": ServedNo, // excluded by name
		"no-team/Pod/app":    ServedYes,
		"podgrace/Pod/app":   ServedNo, // podgrace's own namespace
	} {
		if w := got[name]; w == nil || w.Served != want {
			t.Errorf("%s: %+v, want served %s", name, w, want)
		}
	}
	if w := got["team-a/Pod/batch"]; w != nil && !strings.Contains(w.ServedReason, "not-batch") {
		t.Errorf("reason %q does not name the matchCondition", w.ServedReason)
	}
	if w := got["team-a/Pod/mirror"]; w != nil && !strings.Contains(w.ServedReason, "mirror pod") {
		t.Errorf("reason %q does not say it is a mirror pod", w.ServedReason)
	}

	// A condition the audit cannot evaluate says so instead of guessing.
	v, _ = values(t, "webhook:\n  matchConditions: [{name: authz, expression: \"authorizer.group('').resource('pods').check('create').allowed()\"}]\n")
	rep = Manifests(context.Background(), []Source{src}, ManifestOptions{Env: Env{Config: cfg, HookAction: policy.HookSleep}, Values: v,
		NamespaceLabels: map[string]string{policy.LabelInject: policy.InjectEnabled}})
	if w := byName(rep)["no-team/Pod/app"]; w == nil || w.Served != ServedUnknown || !strings.Contains(w.ServedReason, "authz") {
		t.Errorf("authorizer condition: %+v, want unknown naming it", w)
	}
}

// TestManifestsUnreachableRegistry: with --inspect-images, an image whose
// registry does not answer is a warning of that workload; the others are
// audited.
func TestManifestsUnreachableRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	src := Source{Name: "x.yaml", Data: []byte(`apiVersion: v1
kind: Pod
metadata: {name: from-image}
spec: {containers: [{name: app, image: ` + addr + `/shop/web:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: own-command}
spec: {containers: [{name: app, image: ` + addr + `/shop/web:1, command: [sh, -c, "exec /app"]}]}
`)}
	cfg := policy.Default()
	o := imageconfig.OptionsFrom(cfg.ImageInspection)
	o.LoopbackRegistries = []string{addr} // the tests' way to reach loopback
	images := imageconfig.New(o).Lookup(
		func(context.Context, *corev1.Pod) (authn.Keychain, error) { return authn.DefaultKeychain, nil })
	rep := Manifests(context.Background(), []Source{src}, ManifestOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep, Images: images}})
	got := byName(rep)
	w := got["default/Pod/from-image"]
	if w == nil || !slices.ContainsFunc(w.Warnings, func(s string) bool { return strings.Contains(s, "unreadable") && strings.Contains(s, addr) }) {
		t.Errorf("from-image: %+v, want a warning that the image config is unreadable", w)
	}
	if w := got["default/Pod/own-command"]; w == nil || len(w.Errors) > 0 || len(w.Changes) != 1 {
		t.Errorf("own-command: %+v, want it audited (a sleep, nothing else)", w)
	}
}

// TestPrint: json and yaml carry the schema's identity; the table has a row
// per workload.
func TestPrint(t *testing.T) {
	rep := Manifests(context.Background(), []Source{fixture(t, "shop.yaml")}, ManifestOptions{Env: Env{Config: ptrTo(policy.Default()), HookAction: policy.HookSleep}})
	for _, format := range []string{"json", "yaml"} {
		var out, errOut bytes.Buffer
		if err := Print(rep, format, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		var err error
		if format == "json" {
			err = json.Unmarshal(out.Bytes(), &back)
		} else {
			err = sigsyaml.Unmarshal(out.Bytes(), &back)
		}
		if err != nil || back["apiVersion"] != APIVersion || back["kind"] != Kind {
			t.Errorf("%s: %v, identity %v %v", format, err, back["apiVersion"], back["kind"])
		}
	}
	var out, errOut bytes.Buffer
	if err := Print(rep, "", &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1+len(rep.Workloads) || !strings.HasPrefix(lines[0], "NAMESPACE") {
		t.Errorf("table:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "DaemonSet/broken") {
		t.Errorf("errors on stderr: %q", errOut.String())
	}
	if err := Print(rep, "xml", &out, &errOut); err == nil {
		t.Error("-o xml accepted")
	}
}

func ptrTo[T any](v T) *T { return &v }

func keysOf(m map[string]*Workload) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestManifestsJSONAndLists: a JSON stream and a List are read as kubectl
// reads them, object by object.
func TestManifestsJSONAndLists(t *testing.T) {
	src := Source{Name: "x", Data: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"x","command":["/a"]}]}}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"x","command":["/b"]}]}}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
  spec:
    selector: {matchLabels: {app: d}}
    template:
      metadata: {labels: {app: d}}
      spec: {containers: [{name: c, image: x, command: [/d]}]}
`)}
	cfg := policy.Default()
	rep := Manifests(context.Background(), []Source{src}, ManifestOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep}})
	if got := keysOf(byName(rep)); !slices.Equal(got, []string{"default/Deployment/d", "default/Pod/a", "default/Pod/b"}) {
		t.Errorf("workloads %v; errors %v", got, rep.Errors)
	}
}

// TestManifestsInspectImages: with --inspect-images, a shell-form CMD the
// pod inherits from its image (read from a real OCI registry) is a
// shell-pid1 risk that podgrace fixes, and the change names the digest pin;
// without it, the argv is not judged.
func TestManifestsInspectImages(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	digest := reg.Push(t, "shop/ruby", "2.4", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "ruby server.rb"}})
	src := Source{Name: "x.yaml", Data: []byte(`apiVersion: v1
kind: Pod
metadata: {name: ruby}
spec: {containers: [{name: app, image: ` + reg.Ref("shop/ruby:2.4") + `}]}
`)}
	cfg := policy.Default()
	o := imageconfig.OptionsFrom(cfg.ImageInspection)
	o.LoopbackRegistries = []string{reg.Host} // the tests' way to reach loopback
	lookup := imageconfig.New(o).Lookup(nil)
	rep := Manifests(context.Background(), []Source{src}, ManifestOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep, Images: lookup}})
	w := byName(rep)["default/Pod/ruby"]
	if w == nil {
		t.Fatalf("no workload: %+v", rep)
	}
	wantChanges := []string{"add preStop sleep 15s to app", "drop the shell of app (exec form)", "pin app to " + digest}
	if !slices.Equal(w.Changes, wantChanges) {
		t.Errorf("changes %q, want %q", w.Changes, wantChanges)
	}
	if r := riskTypes(w, false); !slices.Contains(r, "shell-pid1(app)") || len(riskTypes(w, true)) != 0 {
		t.Errorf("risks %+v, want shell-pid1 fixed", w.Risks)
	}

	rep = Manifests(context.Background(), []Source{src}, ManifestOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep}})
	if w := byName(rep)["default/Pod/ruby"]; w == nil || slices.Contains(riskTypes(w, false), "shell-pid1(app)") {
		t.Errorf("without inspection: %+v, want the inherited argv unjudged", w)
	}
}
