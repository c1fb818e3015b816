package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ClientCertAuth returns a TLS option that requires every caller to present
// a client certificate signed by a CA of caFile (PEM): with it, only the API
// server, configured with a webhook client certificate (an
// AdmissionConfiguration's kubeConfigFile), can have a review answered.
// docs/operate/security.md says when this is possible (self-managed control planes)
// and what replaces it elsewhere. The option is a plain tls.Config change,
// so any server built on crypto/tls takes it.
func ClientCertAuth(caFile string) (func(*tls.Config), error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("client CA: " + caFile + " holds no PEM certificate")
	}
	return func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	}, nil
}
