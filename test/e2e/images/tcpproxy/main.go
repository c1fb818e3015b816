// Command tcpproxy plays a database proxy sidecar (what cloud-sql-proxy is
// to an app) and the database behind it, for the e2e sidecar test.
//
//	tcpproxy --listen 127.0.0.1:5432 --upstream HOST:PORT   forward each connection
//	tcpproxy --serve :5432                                  the "database": answers each line with "1"
//
// Like cloud-sql-proxy without --max-sigterm-delay, the forwarder exits the
// moment it gets SIGTERM: every connection it carries is cut and new ones
// are refused, which is why it must outlive the app it serves.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5432", "address to listen on (forward mode)")
	upstream := flag.String("upstream", "", "HOST:PORT to forward every connection to")
	serve := flag.String("serve", "", "address to serve the line protocol on (database mode)")
	flag.Parse()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		fmt.Printf("got SIGTERM (pid %d), exiting\n", os.Getpid())
		os.Exit(0)
	}()

	var err error
	switch {
	case *serve != "":
		err = serveDB(*serve)
	case *upstream != "":
		err = forward(*listen, *upstream)
	default:
		err = fmt.Errorf("--upstream or --serve is required")
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func forward(listen, upstream string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("forwarding %s -> %s, pid %d\n", listen, upstream, os.Getpid())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer func() { _ = c.Close() }()
			u, err := net.DialTimeout("tcp", upstream, 2*time.Second)
			if err != nil {
				fmt.Printf("dial %s: %v\n", upstream, err)
				return
			}
			defer func() { _ = u.Close() }()
			go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, u)
		}()
	}
}

func serveDB(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("database on %s, pid %d\n", addr, os.Getpid())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer func() { _ = c.Close() }()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			for {
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				if _, err := c.Write([]byte("1\n")); err != nil {
					return
				}
			}
		}()
	}
}
