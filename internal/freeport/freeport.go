// Package freeport hands out loopback TCP ports for tests that start
// servers which bind their own addresses (controller-runtime's manager binds
// its metrics and health-probe addresses itself, so a test cannot pass it a
// listener).
//
// A port from a closed ":0" listener is only a suggestion: the kernel may
// give the same port to the next ":0" bind in this process, and parallel
// tests then start two servers on one port. Take keeps every port it has
// returned out of later answers, the way envtest's own port cache does, and
// holds its listeners open until it has all n, so one call never returns a
// port twice either.
package freeport

import (
	"fmt"
	"net"
	"sync"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// maxTries bounds the binds one call makes before it gives up.
const maxTries = 1000

// Take returns n distinct free ports on 127.0.0.1 that no earlier call in
// this process returned.
func Take(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	out := make([]int, 0, n)
	for try := 0; len(out) < n; try++ {
		if try == maxTries {
			return nil, fmt.Errorf("freeport: %d binds gave only %d new ports of %d", maxTries, len(out), n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		if given[p] {
			continue
		}
		given[p] = true
		out = append(out, p)
	}
	return out, nil
}
