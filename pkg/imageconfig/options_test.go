package imageconfig

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// TestOptionsFromConfig: the cluster config's defaults are the Inspector's,
// and a TTL of 0s, which the config's validation accepts, disables that
// cache (New would otherwise read a zero field as "the default").
func TestOptionsFromConfig(t *testing.T) {
	def := policy.Default().ImageInspection
	o := New(OptionsFrom(def)).opts
	if o.Timeout != def.Timeout.Duration || o.TagTTL != def.TagTTL.Duration || o.ErrorTTL != def.ErrorTTL.Duration || o.MaxEntries != def.CacheSize {
		t.Errorf("defaults %+v, config %+v", o, def)
	}
	zero := def
	zero.TagTTL, zero.ErrorTTL = metav1.Duration{}, metav1.Duration{}
	if o := New(OptionsFrom(zero)).opts; o.TagTTL >= 0 || o.ErrorTTL >= 0 {
		t.Errorf("tagTTL and errorTTL 0s: %v, %v; want the caches off (negative)", o.TagTTL, o.ErrorTTL)
	}
}
