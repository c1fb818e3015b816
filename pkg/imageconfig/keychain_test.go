package imageconfig

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

func dockerConfigJSON(body string) corev1.Secret {
	return corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(body)}}
}

func dockercfg(body string) corev1.Secret {
	return corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte(body)}}
}

func TestKeychainFromSecrets(t *testing.T) {
	t.Parallel()
	// "auth" is base64("user:pass"), as `kubectl create secret docker-registry` writes it.
	const auth = `"auth":"dXNlcjpwYXNz"`
	tests := map[string]struct {
		secrets []corev1.Secret
		image   string
		want    string // username, "" for anonymous
	}{
		"dockerconfigjson host": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"reg.example:5000":{` + auth + `}}}`)},
			image:   "reg.example:5000/team/app:1", want: "user",
		},
		"dockerconfigjson with scheme and username/password": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"https://reg.example":{"username":"u2","password":"p"}}}`)},
			image:   "reg.example/app", want: "u2",
		},
		"dockercfg": {
			secrets: []corev1.Secret{dockercfg(`{"reg.example":{` + auth + `}}`)},
			image:   "reg.example/app", want: "user",
		},
		"other registry": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"reg.example":{` + auth + `}}}`)},
			image:   "other.example/app",
		},
		"other port": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"reg.example:5000":{` + auth + `}}}`)},
			image:   "reg.example:6000/app",
		},
		"wildcard host": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"*.reg.example":{` + auth + `}}}`)},
			image:   "eu.reg.example/app", want: "user",
		},
		"path prefix is more specific": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"reg.example":{"username":"host","password":"p"},"reg.example/team":{"username":"team","password":"p"}}}`)},
			image:   "reg.example/team/app", want: "team",
		},
		"first secret wins": {
			secrets: []corev1.Secret{
				dockerConfigJSON(`{"auths":{"reg.example":{"username":"pod","password":"p"}}}`),
				dockerConfigJSON(`{"auths":{"reg.example":{"username":"serviceaccount","password":"p"}}}`),
			},
			image: "reg.example/app", want: "pod",
		},
		"docker hub as docker login writes it": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"https://index.docker.io/v1/":{` + auth + `}}}`)},
			image:   "nginx", want: "user",
		},
		"docker hub as docker.io": {
			secrets: []corev1.Secret{dockerConfigJSON(`{"auths":{"docker.io":{` + auth + `}}}`)},
			image:   "myorg/app:1", want: "user",
		},
		"wrong type is ignored": {
			secrets: []corev1.Secret{{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"reg.example":{` + auth + `}}}`)}}},
			image:   "reg.example/app",
		},
		"no secrets": {image: "reg.example/app"},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			t.Parallel()
			kc, err := KeychainFromSecrets(tc.secrets)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(tc.image)
			if err != nil {
				t.Fatal(err)
			}
			a, err := kc.Resolve(ref.Context())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := a.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Username != tc.want {
				t.Errorf("username = %q, want %q", cfg.Username, tc.want)
			}
			if tc.want == "" && a != authn.Anonymous {
				t.Errorf("want anonymous, got %T", a)
			}
		})
	}
}

func TestKeychainFromSecretsMalformed(t *testing.T) {
	t.Parallel()
	for _, s := range []corev1.Secret{dockerConfigJSON(`{"auths":`), dockercfg(`[]`)} {
		if _, err := KeychainFromSecrets([]corev1.Secret{s}); err == nil {
			t.Errorf("%s: no error", s.Data)
		}
	}
}
