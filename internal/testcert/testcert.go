// Package testcert writes a throwaway CA and a serving certificate it signs,
// for the benchmarks and scale tests that run podgrace's webhook (or the
// floor server) as a process and register it with a caBundle. The keys and
// certificates are pkg/selfcert's, the ones podgrace makes for itself.
package testcert

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/podgrace/podgrace/pkg/selfcert"
)

// Write writes into dir a CA made for the call (ca.crt) and a serving
// certificate for hosts, DNS names or IP addresses, signed by it (tls.crt,
// tls.key), valid for a day. It returns the CA's PEM, the caBundle of a
// webhook served with them.
func Write(dir string, hosts ...string) ([]byte, error) {
	if len(hosts) == 0 {
		return nil, errors.New("testcert: no host to certify")
	}
	now := time.Now()
	ca, err := selfcert.NewCA("podgrace-test-ca", 24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	var names []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, h)
		}
	}
	leaf, err := ca.Issue(names, ips, 24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	return ca.CertPEM, nil
}
