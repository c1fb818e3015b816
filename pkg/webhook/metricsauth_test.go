package webhook

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The real reviews are proven against the API server in
// test/integration (TestSecureMetrics); this checks the cache around them.
func TestMetricsAuthCache(t *testing.T) {
	var reviews, accesses int
	var apiDown bool
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reviews++
		if apiDown {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		tr.Status = authenticationv1.TokenReviewStatus{
			Authenticated: tr.Spec.Token != "unknown",
			User:          authenticationv1.UserInfo{Username: tr.Spec.Token},
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		accesses++
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		sar.Status.Allowed = sar.Spec.User == "reader" && sar.Spec.NonResourceAttributes.Path == "/metrics" &&
			sar.Spec.NonResourceAttributes.Verb == "get"
		return true, sar, nil
	})
	now := time.Unix(0, 0)
	a := &metricsAuthorizer{
		tokens:   cs.AuthenticationV1().TokenReviews(),
		accesses: cs.AuthorizationV1().SubjectAccessReviews(),
		cache:    map[[sha256.Size]byte]verdict{},
		now:      func() time.Time { return now },
	}
	h := a.wrap(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	get := func(token string) int {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	expect := func(step string, code, wantCode, wantReviews, wantAccesses int) {
		t.Helper()
		if code != wantCode || reviews != wantReviews || accesses != wantAccesses {
			t.Errorf("%s: %d after %d token and %d access reviews, want %d after %d and %d",
				step, code, reviews, accesses, wantCode, wantReviews, wantAccesses)
		}
	}

	expect("reader, first", get("reader"), http.StatusOK, 1, 1)
	expect("reader, cached", get("reader"), http.StatusOK, 1, 1)
	now = now.Add(metricsAllowTTL - time.Second)
	expect("reader, just before the TTL", get("reader"), http.StatusOK, 1, 1)
	now = now.Add(time.Second)
	expect("reader, at the TTL", get("reader"), http.StatusOK, 2, 2)

	expect("stranger", get("stranger"), http.StatusForbidden, 3, 3)
	expect("stranger, cached", get("stranger"), http.StatusForbidden, 3, 3)
	now = now.Add(metricsDenyTTL)
	expect("stranger, after the deny TTL", get("stranger"), http.StatusForbidden, 4, 4)

	expect("unknown token", get("unknown"), http.StatusUnauthorized, 5, 4)
	expect("unknown token, cached", get("unknown"), http.StatusUnauthorized, 5, 4)

	apiDown = true
	expect("API server down", get("other"), http.StatusInternalServerError, 6, 4)
	expect("API server down, not cached", get("other"), http.StatusInternalServerError, 7, 4)
	apiDown = false

	for i := range metricsCacheMax + 10 {
		get("reader-" + strconv.Itoa(i))
	}
	if n := len(a.cache); n > metricsCacheMax {
		t.Errorf("cache holds %d verdicts, bound %d", n, metricsCacheMax)
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER  abc ":   "",
		" Bearer abc":    "abc",
		"Bearer":         "",
		"Bearer ":        "",
		"Basic abc":      "",
		"":               "",
		"Bearerabc":      "",
		"Token abc":      "",
		"Bearer a b":     "a",
		"Bearer\tabc":    "",
		"Bearer abc\r\n": "abc",
	} {
		if got := bearerToken(header); got != want {
			t.Errorf("bearerToken(%q) = %q, want %q", header, got, want)
		}
	}
}
