package imageconfig

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	k8schain "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

// KeychainFromSecrets builds a keychain from image pull Secrets of type
// kubernetes.io/dockerconfigjson and kubernetes.io/dockercfg; Secrets of any
// other type, or without the expected key, are ignored. Pass the pod's
// imagePullSecrets first, then its ServiceAccount's: for a registry several
// Secrets match, the first one wins (as the kubelet's keyring orders them),
// and a more specific entry (registry/path) beats a host-only one.
//
// Matching is go-containerregistry's port of the kubelet keyring (host globs
// such as *.example.com, ports, path prefixes). On top of it, an image on
// Docker Hub also matches an entry written as "docker.io", as it does for
// the kubelet; the library alone only knows "index.docker.io" and
// "https://index.docker.io/v1/".
//
// A malformed Secret is an error: the caller warns and inspects
// anonymously, or not at all.
func KeychainFromSecrets(secrets []corev1.Secret) (authn.Keychain, error) {
	kc, err := k8schain.NewFromPullSecrets(context.Background(), secrets)
	if err != nil {
		return nil, fmt.Errorf("reading image pull secrets: %w", err)
	}
	return dockerHubAlias{kc}, nil
}

// dockerHubAlias retries a Docker Hub lookup under the "docker.io" spelling
// when the "index.docker.io" one found nothing.
type dockerHubAlias struct {
	authn.Keychain
}

func (k dockerHubAlias) Resolve(target authn.Resource) (authn.Authenticator, error) {
	a, err := k.Keychain.Resolve(target)
	if err != nil || a != authn.Anonymous || target.RegistryStr() != name.DefaultRegistry {
		return a, err
	}
	return k.Keychain.Resolve(resource{
		registry: "docker.io",
		str:      "docker.io" + strings.TrimPrefix(target.String(), name.DefaultRegistry),
	})
}

// resource is an authn.Resource with a chosen spelling.
type resource struct{ registry, str string }

func (r resource) String() string      { return r.str }
func (r resource) RegistryStr() string { return r.registry }
