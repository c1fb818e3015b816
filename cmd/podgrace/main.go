// Command podgrace is the podgrace webhook and CLI. Installed as
// kubectl-podgrace it is also a kubectl plugin (`kubectl podgrace inject`).
package main

import (
	"os"

	"github.com/podgrace/podgrace/pkg/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
