// Command registry serves go-containerregistry's in-memory OCI registry
// (pkg/registry) over plain HTTP, with the OCI 1.1 referrers API on: cosign
// v3 stores image signatures and attestations as referrers. `make
// test-release` runs it on loopback as the registry `make publish` pushes
// to; go-containerregistry's own cmd/registry has no referrers support.
//
//	go run ./hack/registry -addr 127.0.0.1:0 -addr-file /tmp/registry.addr
//
// Everything lives in memory and is gone when the process exits (SIGTERM or
// SIGINT).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "address to listen on (port 0 picks a free one)")
	addrFile := flag.String("addr-file", "", "file to write the address listened on to, once listening")
	verbose := flag.Bool("v", false, "log every request")
	flag.Parse()
	if err := run(*addr, *addrFile, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run(addr, addrFile string, verbose bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	logger := log.New(io.Discard, "", 0)
	if verbose {
		logger = log.New(os.Stderr, "registry: ", log.LstdFlags)
	}
	srv := &http.Server{
		Handler:           registry.New(registry.Logger(logger), registry.WithReferrersSupport(true)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if addrFile != "" {
		tmp := addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, addrFile); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "registry: serving on %s (referrers API on)\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
