// Command meshproxy plays a service-mesh sidecar (linkerd-proxy) for the e2e
// sidecar test: it receives the pod's inbound HTTP traffic and forwards it
// to the app over localhost, with keep-alive connections to the app.
//
//	meshproxy [--listen :4143] [--app 127.0.0.1:8080] [--admin :4191]
//
// Like linkerd-proxy, at SIGTERM it closes its listener (new connections
// are refused) and finishes the requests in flight, then exits. GET /ready
// on the admin port answers "ready" (its readiness probe).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":4143", "inbound address")
	app := flag.String("app", "127.0.0.1:8080", "the app's address (localhost)")
	admin := flag.String("admin", ":4191", "admin address (GET /ready)")
	flag.Parse()

	target := &url.URL{Scheme: "http", Host: *app}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			fmt.Printf("%s proxy error: %v\n", time.Now().Format(time.RFC3339Nano), err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := &http.Server{Addr: *listen, Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	adminMux := http.NewServeMux()
	adminMux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	go func() {
		_ = (&http.Server{Addr: *admin, Handler: adminMux, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe()
	}()

	done := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		fmt.Printf("got SIGTERM (pid %d): closing the listener, draining\n", os.Getpid())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := srv.Shutdown(ctx)
		cancel()
		fmt.Printf("exiting (shutdown: %v)\n", err)
		close(done)
	}()
	fmt.Printf("proxying %s -> %s, pid %d\n", *listen, *app, os.Getpid())
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-done
}
