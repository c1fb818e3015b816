// Package repo holds checks on the repository as a whole: what its files cite
// and how long its README is.
package repo

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// textFiles returns every text file of the repository (relative paths),
// skipping build output and git's own directory.
func textFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "dist":
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(data, 0) >= 0 {
			return nil // binary
		}
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["go.mod"]; !ok {
		t.Fatalf("%s is not the repository root", root)
	}
	return files
}

// relPath matches a path that starts by climbing out of its directory.
var relPath = regexp.MustCompile(`(?:\.\./)+[A-Za-z0-9_.\-/]*`)

// TestCitationsStayInside: the project stands alone. A reader of any file can
// open what it cites, so no file cites a document by a relative path that
// leaves the repository, and none cites the external design contract the
// project's own docs/design.md replaces.
func TestCitationsStayInside(t *testing.T) {
	t.Parallel()
	external := []string{"DESIGN" + ".md", "DESIGN" + " §"}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for rel, data := range textFiles(t) {
		for i, line := range strings.Split(string(data), "\n") {
			for _, e := range external {
				if strings.Contains(line, e) {
					t.Errorf("%s:%d cites %q, which is not in the repository; cite docs/design.md §N", rel, i+1, e)
				}
			}
			for _, p := range relPath.FindAllString(line, -1) {
				target := filepath.Join(absRoot, filepath.Dir(rel), p)
				if r, err := filepath.Rel(absRoot, target); err != nil || r == ".." || strings.HasPrefix(r, "../") {
					t.Errorf("%s:%d cites %q, outside the repository", rel, i+1, p)
				}
			}
		}
	}
}

// The check above must see a citation that leaves the repository.
func TestRelPathFindsEscapes(t *testing.T) {
	t.Parallel()
	if got := relPath.FindAllString("see ../../shared/DESIGN (and ../README.md)", -1); len(got) != 2 || got[0] != "../../shared/DESIGN" {
		t.Errorf("relPath found %q", got)
	}
}
