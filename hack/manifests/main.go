// Command manifests writes what is generated: the chart's `config:` value and
// its schema from pkg/policy.ConfigFields, then from the chart config/ (plain
// kustomize manifests, the chart rendered with its default values and split
// per kind) and the values table of charts/podgrace/README.md.
//
//	go run ./hack/manifests          # write (make manifests)
//	go run ./hack/manifests -check   # fail if anything is stale (make verify-manifests)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

func main() {
	check := flag.Bool("check", false, "report stale files and exit 1 instead of writing")
	flag.Parse()
	if err := run(*check); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(check bool) error {
	chartDir, err := chart.Dir()
	if err != nil {
		return err
	}
	root := filepath.Dir(filepath.Dir(chartDir))
	if !check {
		// The chart's values come first: config/ is rendered from them.
		fromPolicy, err := chart.FromPolicy(chartDir)
		if err != nil {
			return err
		}
		if err := write(root, fromPolicy); err != nil {
			return err
		}
	}
	files, err := chart.Generated(chartDir)
	if err != nil {
		return err
	}
	stale, err := chart.Stale(root, files)
	if err != nil {
		return err
	}
	if check {
		if len(stale) > 0 {
			return fmt.Errorf("out of date, run `make manifests`: %v", stale)
		}
		return nil
	}
	// config/ holds only generated files: remove what is no longer generated.
	err = filepath.WalkDir(filepath.Join(root, chart.ConfigDir), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if _, ok := files[rel]; !ok {
			fmt.Println("removed", rel)
			return os.Remove(path)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return write(root, files)
}

// write writes the files that differ from what is on disk.
func write(root string, files map[string][]byte) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(root, p)
		if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", p)
	}
	return nil
}
