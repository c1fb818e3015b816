package inject

import (
	"go/ast"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podgrace/podgrace/internal/gosource"
)

// parseDir parses the non-test Go files of one directory.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	_, files, err := gosource.ParseDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSkipReasonsDistinct: the reasons a container, a sleep or a rewrite is
// skipped share the status annotation's fields and the
// podgrace_containers_skipped_total reason label, so no two may be spelled
// the same (once "no-command" meant two things), and each is set somewhere
// outside the tests. The constants are read from the source, so a new one is
// checked without a list to keep.
func TestSkipReasonsDistinct(t *testing.T) {
	t.Parallel()
	decls := map[string]string{} // value -> package.Name
	names := map[string]bool{}
	for _, dir := range []string{".", "../policy", "../execform"} {
		for _, f := range parseDir(t, dir) {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if !strings.HasPrefix(n.Name, "Skip") && !strings.HasPrefix(n.Name, "Reason") || i >= len(vs.Values) {
							continue
						}
						lit, ok := vs.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							continue
						}
						v, _ := strconv.Unquote(lit.Value)
						qualified := f.Name.Name + "." + n.Name
						if other, dup := decls[v]; dup {
							t.Errorf("%s and %s are both %q", other, qualified, v)
						}
						decls[v] = qualified
						names[n.Name] = true
					}
				}
			}
		}
	}
	if len(decls) < 20 {
		t.Fatalf("found only %d skip reasons: %v", len(decls), decls)
	}
	// Used: named in a non-test file of pkg/ besides its declaration.
	uses := map[string]int{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		for _, f := range parseDir(t, path) {
			ast.Inspect(f, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && names[id.Name] {
					uses[id.Name]++
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for v, q := range decls {
		if uses[q[strings.Index(q, ".")+1:]] < 2 {
			t.Errorf("%s (%q) is declared but never set", q, v)
		}
	}
}
