// Command floorserver is the transport floor of the HTTPS benchmark
// (docs/develop/performance.md): podgrace's server stack, without podgrace. It is
// controller-runtime's webhook server with podgrace's TLS settings (TLS 1.2
// minimum, HTTP/1.1 only) and request metrics, serving baseline.Floor at
// /mutate-v1-pod: every review is decoded and answered allowed, unchanged.
// Whatever podgrace costs over it under load is podgrace's handler. With
// -patch it answers every review with that file's JSON patch instead
// (baseline.Replay).
//
//	floorserver -cert-dir DIR -host 127.0.0.1 -port 9444 [-patch FILE]
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/podgrace/podgrace/pkg/webhook"
	"github.com/podgrace/podgrace/test/bench/baseline"
)

func main() {
	certDir := flag.String("cert-dir", webhook.DefaultCertDir, "directory holding tls.crt and tls.key")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 9444, "port to serve HTTPS on")
	pprofAddr := flag.String("pprof-bind-address", "", "address net/http/pprof is served on (off when empty)")
	patchFile := flag.String("patch", "", "answer every review with this JSON patch (baseline.Replay) instead of none")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	if *pprofAddr != "" {
		go func() {
			// http.DefaultServeMux holds net/http/pprof's handlers.
			err := http.ListenAndServe(*pprofAddr, nil) //nolint:gosec // a benchmark's local profiling endpoint
			fmt.Fprintln(os.Stderr, "floorserver: pprof:", err)
		}()
	}

	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    *host,
		Port:    *port,
		CertDir: *certDir,
		// podgrace's secureTLS.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"}
		}},
	})
	var h http.Handler = baseline.Floor{}
	if *patchFile != "" {
		patch, err := os.ReadFile(*patchFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floorserver:", err)
			os.Exit(1)
		}
		h = baseline.Replay{Patch: patch}
	}
	srv.Register(webhook.Path, h)
	if err := srv.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "floorserver:", err)
		os.Exit(1)
	}
}
