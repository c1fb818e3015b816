//go:build tools

// Package k8s is a wrapper module that pins the Kubernetes release whose
// binaries hack/build-kube.sh builds (envtest assets and the e2e cluster).
// The blank imports below keep every command and its dependencies in go.mod
// and go.sum; the file is never compiled (build tag "tools").
//
// go.mod is generated: run `hack/build-kube.sh --regenerate KUBE_VERSION ETCD_VERSION`
// instead of editing it by hand.
package k8s

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
