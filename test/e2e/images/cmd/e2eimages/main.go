// Command e2eimages builds the e2e images with go-containerregistry and,
// with -address, imports them into containerd (hack/cluster/up.sh uses it
// for the pause image).
//
//	e2eimages -out DIR [-address SOCK] [-ctr ctr] NAME...    (NAME: pause testserver shellform traffic)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/podgrace/podgrace/test/e2e/images"
)

func main() {
	os.Exit(run())
}

func run() int {
	out := flag.String("out", "", "directory for the OCI archives (required)")
	address := flag.String("address", "", "containerd socket; when set, import the images into its k8s.io namespace")
	ctr := flag.String("ctr", "ctr", "ctr binary")
	module := flag.String("module", ".", "directory of the podgrace module")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: e2eimages -out DIR [-address SOCK] NAME...")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	archives, _, err := images.Build(ctx, *module, *out, flag.Args()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2eimages:", err)
		return 1
	}
	names := make([]string, 0, len(archives))
	for n := range archives {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("built %s -> %s\n", n, archives[n])
		if *address == "" {
			continue
		}
		if err := images.Import(ctx, *ctr, *address, archives[n]); err != nil {
			fmt.Fprintln(os.Stderr, "e2eimages:", err)
			return 1
		}
		fmt.Printf("imported %s\n", n)
	}
	return 0
}
