//go:build tools

// Package etcd is a wrapper module that pins the etcd server release that
// hack/build-kube.sh builds (envtest assets and the e2e cluster). The root
// package of go.etcd.io/etcd/server/v3 is etcd's main package; the blank
// import keeps it and its dependencies in go.mod and go.sum. The file is never
// compiled (build tag "tools").
//
// go.mod is generated: run `hack/build-kube.sh --regenerate KUBE_VERSION ETCD_VERSION`
// instead of editing it by hand.
package etcd

import (
	_ "go.etcd.io/etcd/server/v3"
)
