package webhook

import (
	"testing"

	"k8s.io/apimachinery/pkg/version"

	"github.com/podgrace/podgrace/pkg/policy"
)

func TestHookActionFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		info version.Info
		want policy.HookAction
	}{
		{version.Info{GitVersion: "v1.36.3"}, policy.HookSleep},
		{version.Info{GitVersion: "v1.30.0"}, policy.HookSleep},
		{version.Info{GitVersion: "v1.29.9"}, policy.HookExec},
		{version.Info{GitVersion: "v1.28.15-eks-7f9249a"}, policy.HookExec},
		{version.Info{GitVersion: "v1.31.2-gke.1200"}, policy.HookSleep},
		{version.Info{GitVersion: "garbage", Major: "1", Minor: "30+"}, policy.HookSleep},
		{version.Info{GitVersion: "", Major: "1", Minor: "27+"}, policy.HookExec},
	}
	for _, tc := range cases {
		got, err := HookActionFor(&tc.info)
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.info, got, err, tc.want)
		}
	}
	if _, err := HookActionFor(&version.Info{GitVersion: "x"}); err == nil {
		t.Error("an unreadable version gave no error")
	}
}
