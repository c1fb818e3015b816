// Command sigapp stands in for the application in TestSignalDelivery. It
// appends to the file named by $SIGAPP_LOG a "ready" line with what it was
// started with (its PID, arguments and $GREETING, so that the test can
// compare the original and the rewritten command), then waits for SIGTERM,
// appends "got SIGTERM" and exits 0. Its handler is what lets the kernel
// deliver SIGTERM to it when it is PID 1 of a PID namespace.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	log, err := os.OpenFile(os.Getenv("SIGAPP_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigapp:", err)
		os.Exit(2)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Fprintf(log, "ready pid=%d args=%q greeting=%q\n", os.Getpid(), os.Args[1:], os.Getenv("GREETING"))
	<-term
	fmt.Fprintln(log, "got SIGTERM")
	os.Exit(0)
}
