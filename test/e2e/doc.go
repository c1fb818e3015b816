// Package e2e holds podgrace's end-to-end tests: they run against the real
// single-node cluster hack/cluster/up.sh brings up (kubelet, containerd,
// kube-proxy in iptables mode), install podgrace as a user does (image
// imported into containerd, chart rendered and applied, TLS from
// cert-manager) and measure what podgrace is for: requests dropped during a
// rolling update, and whether SIGTERM reaches an app started by a
// shell-form command.
//
// The tests are behind the build tag e2e; `make e2e` brings the cluster up,
// runs them and tears the cluster down. docs/develop/e2e.md describes the method and
// the measured numbers.
package e2e
