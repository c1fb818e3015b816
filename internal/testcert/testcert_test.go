package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
)

// TestWrite: the serving certificate loads with its key and verifies against
// the returned CA for every host asked for, DNS name or IP address, and for
// no other.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	caPEM, err := Write(dir, "podgrace.podgrace.svc", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("the returned CA PEM does not parse")
	}
	for _, h := range []string{"podgrace.podgrace.svc", "127.0.0.1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example"}); err == nil {
		t.Error("verifies for a host it was not made for")
	}
	if _, err := Write(dir); err == nil {
		t.Error("Write with no host: no error")
	}
}
