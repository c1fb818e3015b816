package testkube

import (
	"errors"
	"net"
)

// HostIP is a non-loopback IPv4 address of this machine, for the
// EndpointSlices that route a Service-referenced webhook to a podgrace
// running here (EndpointSlices may not hold loopback addresses; the API
// server must run with --enable-aggregator-routing).
func HostIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("no non-loopback IPv4 address to route the webhook Service to")
}
