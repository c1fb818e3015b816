package webhook

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// How long a metrics caller's verdict is remembered, as controller-runtime's
// filters.WithAuthenticationAndAuthorization does (its token cache is 1 min,
// its deny cache 30 s): a scraper every 15-30 s costs the API server one
// TokenReview and one SubjectAccessReview a minute.
const (
	metricsAllowTTL = time.Minute
	metricsDenyTTL  = 10 * time.Second
	// metricsCacheMax bounds the cache; past it, the cache starts over.
	metricsCacheMax = 1024
	// metricsReviewTimeout bounds one TokenReview or SubjectAccessReview.
	metricsReviewTimeout = 10 * time.Second
)

// metricsAuth is a metrics server FilterProvider: a request is served only
// when its bearer token passes a TokenReview and the token's user may `get`
// the request's path, a non-resource URL (SubjectAccessReview), the check
// kube-rbac-proxy and controller-runtime's
// filters.WithAuthenticationAndAuthorization make. That filter is not used
// because it brings in k8s.io/apiserver, which nearly doubles the binary
// (docs/operate/webhook.md); these two reviews are all of it podgrace needs.
func metricsAuth(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationclient.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	authz, err := authorizationclient.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	a := &metricsAuthorizer{
		tokens:   authn.TokenReviews(),
		accesses: authz.SubjectAccessReviews(),
		cache:    map[[sha256.Size]byte]verdict{},
		now:      time.Now,
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return a.wrap(log.WithName("metrics-auth"), next), nil
	}, nil
}

type metricsAuthorizer struct {
	tokens   authenticationclient.TokenReviewInterface
	accesses authorizationclient.SubjectAccessReviewInterface

	mu    sync.Mutex
	cache map[[sha256.Size]byte]verdict
	now   func() time.Time
}

// verdict is the answer for one token, method and path.
type verdict struct {
	code    int // http.StatusOK, StatusUnauthorized or StatusForbidden
	reason  string
	expires time.Time
}

func (a *metricsAuthorizer) wrap(log logr.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := a.check(r.Context(), r)
		if err != nil {
			log.Error(err, "Could not review a metrics request", "path", r.URL.Path)
			http.Error(w, "podgrace: could not review the request with the API server", http.StatusInternalServerError)
			return
		}
		switch v.code {
		case http.StatusOK:
			next.ServeHTTP(w, r)
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="podgrace metrics"`)
			http.Error(w, "podgrace: "+v.reason, v.code)
		default:
			http.Error(w, "podgrace: "+v.reason, v.code)
		}
	})
}

// check returns the verdict for r, from the cache when it holds one.
func (a *metricsAuthorizer) check(ctx context.Context, r *http.Request) (verdict, error) {
	token := bearerToken(r.Header.Get("Authorization"))
	if token == "" {
		return verdict{code: http.StatusUnauthorized, reason: "a bearer token is required"}, nil
	}
	// The verb of a non-resource request is its method in lower case, as
	// the API server's own RequestInfoFactory makes it.
	verb := strings.ToLower(r.Method)
	key := sha256.Sum256([]byte(verb + "\x00" + r.URL.Path + "\x00" + token))
	now := a.now()
	a.mu.Lock()
	v, hit := a.cache[key]
	a.mu.Unlock()
	if hit && now.Before(v.expires) {
		return v, nil
	}

	v, err := a.review(ctx, token, verb, r.URL.Path)
	if err != nil {
		return verdict{}, err
	}
	v.expires = now.Add(metricsDenyTTL)
	if v.code == http.StatusOK {
		v.expires = now.Add(metricsAllowTTL)
	}
	a.mu.Lock()
	if len(a.cache) >= metricsCacheMax {
		clear(a.cache)
	}
	a.cache[key] = v
	a.mu.Unlock()
	return v, nil
}

// review asks the API server who the token belongs to, then whether that
// user may use verb on path.
func (a *metricsAuthorizer) review(ctx context.Context, token, verb, path string) (verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, metricsReviewTimeout)
	defer cancel()
	tr, err := a.tokens.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return verdict{}, err
	}
	if !tr.Status.Authenticated {
		return verdict{code: http.StatusUnauthorized, reason: "the token was not authenticated"}, nil
	}
	u := tr.Status.User
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, vs := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(vs)
	}
	sar, err := a.accesses.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:                  u.Username,
		UID:                   u.UID,
		Groups:                u.Groups,
		Extra:                 extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return verdict{}, err
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		return verdict{code: http.StatusForbidden, reason: "user " + u.Username + " may not " + verb + " " + path}, nil
	}
	return verdict{code: http.StatusOK}, nil
}

// bearerToken is the token of an "Authorization: Bearer <token>" header, or
// "": read as the API server's bearertoken authenticator reads it (the
// scheme case-insensitive, one space, the token up to the next space).
func bearerToken(header string) string {
	parts := strings.SplitN(strings.TrimSpace(header), " ", 3)
	if len(parts) < 2 || !strings.EqualFold(parts[0], "bearer") {
		return ""
	}
	return parts[1]
}
