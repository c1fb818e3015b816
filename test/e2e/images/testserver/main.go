// Command testserver is the e2e tests' application. By default it is the
// common naive HTTP server that stops listening the moment it receives
// SIGTERM; with --graceful it shuts down the way a well-behaved server does.
//
//	app [--port 8080] [--graceful] [--db HOST:PORT]
//
// GET / answers "VERSION HOSTNAME"; GET /readyz answers "ok" (readiness
// probe). With --db every GET / first makes one round trip to a line
// server at HOST:PORT (a new TCP connection: the database call a real
// request makes, here through the pod's cloud-sql-proxy) and answers 503
// when it fails.
//
// On SIGTERM or SIGINT it prints "got SIGTERM" (or "got SIGINT"), then
//   - naive (default): exits 0 at once, closing its listener: exactly the
//     behavior that drops requests during a rolling update when nothing
//     delays the signal;
//   - --graceful: http.Server.Shutdown (stops accepting, finishes in-flight
//     requests, closes idle keep-alive connections), prints "exiting" and
//     exits 0.
package main

import (
	"bufio"
	"context"
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
	graceful := flag.Bool("graceful", false, "on SIGTERM, http.Server.Shutdown instead of exiting at once")
	db := flag.String("db", "", "HOST:PORT of a line server every GET / calls once")
	flag.Parse()

	version := os.Getenv("VERSION")
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		if *db != "" {
			if err := dbCall(*db); err != nil {
				http.Error(w, "db: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
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
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
		if *graceful {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := srv.Shutdown(ctx)
			cancel()
			fmt.Printf("exiting (shutdown: %v)\n", err)
		}
		os.Exit(0)
	}()
	fmt.Printf("listening on :%d, version %q, graceful %v, db %q, pid %d\n", *port, version, *graceful, *db, os.Getpid())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	select {} // Shutdown returned Serve early; the signal goroutine exits
}

// dbCall is one query: connect, send a line, read the answer line.
func dbCall(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("SELECT 1\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "1\n" {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}
