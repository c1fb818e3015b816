// Command pause is the e2e cluster's pod sandbox ("pause") process: it holds
// the pod's namespaces, reaps zombies and exits on SIGINT or SIGTERM. No
// registry is reachable from the e2e machine, so the cluster cannot pull
// registry.k8s.io/pause; this is built with go-containerregistry instead.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range ch {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
