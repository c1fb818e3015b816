package chart_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// webhookArgs renders the chart with values and returns the webhook
// container's args.
func webhookArgs(t *testing.T, values map[string]any) []string {
	t.Helper()
	var d appsv1.Deployment
	if err := chart.Into(render(t, rel, values).Find("Deployment", "podgrace"), &d); err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "webhook" {
			return c.Args
		}
	}
	t.Fatal("no webhook container")
	return nil
}

func limitValues(limits map[string]any) map[string]any {
	return map[string]any{"webhook": map[string]any{"limits": limits}}
}

// TestLimitsValues: the webhook port's limits (webhook.limits) are passed as
// the binary's flags; their defaults are the binary's own defaults (one
// fact, checked here); a set value reaches the flag; and a value out of the
// schema's bounds is refused, naming the key.
func TestLimitsValues(t *testing.T) {
	t.Parallel()
	defaults := []string{
		fmt.Sprintf("--max-connections=%d", webhook.DefaultMaxConnections),
		fmt.Sprintf("--max-in-flight=%d", webhook.DefaultMaxInFlight),
		fmt.Sprintf("--max-body-memory=%d", webhook.DefaultMaxBodyMemory),
		fmt.Sprintf("--read-timeout=%s", webhook.DefaultReadTimeout),
	}
	args := webhookArgs(t, nil)
	for _, want := range defaults {
		if !slices.Contains(args, want) {
			t.Errorf("default args %q lack %s (the binary's default)", args, want)
		}
	}
	args = webhookArgs(t, limitValues(map[string]any{
		"maxConnections": 64, "maxInFlight": 32, "maxBodyMemoryMiB": 16, "readTimeoutSeconds": 5,
	}))
	for _, want := range []string{"--max-connections=64", "--max-in-flight=32", "--max-body-memory=16777216", "--read-timeout=5s"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	for key, bad := range map[string][]any{
		"maxConnections":     {0, 100001, "many", 1.5},
		"maxInFlight":        {0, 10001},
		"maxBodyMemoryMiB":   {7, 4097}, // under one largest review; absurd
		"readTimeoutSeconds": {0, 61, "10s"},
	} {
		for _, v := range bad {
			_, err := chart.Render(chartDir(t), rel, limitValues(map[string]any{key: v}))
			switch {
			case err == nil:
				t.Errorf("webhook.limits.%s: %v was accepted", key, v)
			case !strings.Contains(err.Error(), key):
				t.Errorf("webhook.limits.%s: %v refused without naming it: %v", key, v, err)
			}
		}
	}
	if _, err := chart.Render(chartDir(t), rel, limitValues(map[string]any{"maxConections": 5})); err == nil {
		t.Error("a misspelled webhook.limits key was accepted")
	}
}
