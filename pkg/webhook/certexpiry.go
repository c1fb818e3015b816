package webhook

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// servingCertFile is the serving certificate the expiry gauge reads, set by
// NewServer (the last server started in a process, which in production is
// the only one).
var servingCertFile atomic.Pointer[string]

// certExpiry reports when the serving certificate expires, read from the
// file at each scrape, so that a rotated certificate (cert-manager, or
// podgrace's own CA) shows at once. An unreadable certificate reports 0:
// an alert on "expires within N days" then fires too.
var certExpiry = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
	Name: "podgrace_serving_certificate_expiry_timestamp_seconds",
	Help: "When the webhook's serving certificate expires (Unix time; 0 when it cannot be read).",
}, func() float64 {
	p := servingCertFile.Load()
	if p == nil {
		return 0
	}
	data, err := os.ReadFile(*p)
	if err != nil {
		return 0
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return 0
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return 0
	}
	return float64(cert.NotAfter.Unix())
})

func init() { register(certExpiry) }

// watchCertExpiry points the gauge at the certificate of certDir.
func watchCertExpiry(certDir, certName string) {
	if certName == "" {
		certName = "tls.crt"
	}
	p := filepath.Join(certDir, certName)
	servingCertFile.Store(&p)
}
