package webhook

import (
	"go/ast"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podgrace/podgrace/internal/gosource"
)

// TestCollectorsRegistered: every collector this package creates goes
// through register, so that Collectors (and docs/reference/metrics.md,
// generated from it) lists everything /metrics serves of podgrace's.
func TestCollectorsRegistered(t *testing.T) {
	t.Parallel()
	fset, files, err := gosource.ParseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "prometheus" && strings.HasPrefix(sel.Sel.Name, "New") && !strings.HasSuffix(sel.Sel.Name, "Registry") {
				created++
			}
			if sel.Sel.Name == "MustRegister" && filepath.Base(fset.Position(sel.Pos()).Filename) != "metrics.go" {
				t.Errorf("%s: registers a collector without register", fset.Position(sel.Pos()))
			}
			return true
		})
	}
	if n := len(Collectors()); n != created || n < 16 {
		t.Errorf("%d collectors registered, %d created in the source", n, created)
	}
}
