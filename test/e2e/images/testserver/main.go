// Command testserver is the e2e tests' application: the common naive HTTP
// server that stops listening the moment it receives SIGTERM.
//
//	app [--port 8080]
//
// GET / answers "VERSION HOSTNAME"; GET /readyz answers "ok" (readiness
// probe). On SIGTERM or SIGINT it prints "got SIGTERM" (or "got SIGINT") and
// exits 0 at once, closing its listener: exactly the behavior that drops
// requests during a rolling update when nothing delays the signal.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	port := flag.Int("port", 8080, "TCP port to listen on")
	flag.Parse()

	version := os.Getenv("VERSION")
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %s\n", version, host)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})

	ln, err := net.Listen("tcp", ":"+strconv.Itoa(*port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		name := "SIGTERM"
		if s == syscall.SIGINT {
			name = "SIGINT"
		}
		// Printed before exiting so that the e2e test can see the signal
		// arrived; os.Stdout is unbuffered.
		fmt.Printf("got %s (pid %d)\n", name, os.Getpid())
		os.Exit(0)
	}()
	fmt.Printf("listening on :%d, version %q, pid %d\n", *port, version, os.Getpid())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
