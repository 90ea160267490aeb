package eval

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFitMirrorsAdapter holds fit.go to the adapter's fit and gate: every
// function and type it mirrors must read as the adapter's does, up to the
// two renamed errors. When this fails, copy the adapter's new code over
// (or, better, use it directly once the adapter exports it).
func TestEvalFitMirrorsAdapter(t *testing.T) {
	var adapterSrc []string
	for _, f := range []string{"fit.go", "gate.go"} {
		p := filepath.Join("..", "adapter", f)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("adapter sources not beside eval: %v", err)
		}
		adapterSrc = append(adapterSrc, p)
	}
	want := decls(t, adapterSrc...)
	got := decls(t, "fit.go")
	mirrored := []string{"func fitHead", "func trainingSet", "func split", "func mean", "func gate", "func predict",
		"func numbers", "type sample", "type fitParams", "type row", "type classGate", "type labelAgreement",
		"type gateReport", "const gateSlack", "const gateFPRBefore"}
	norm := strings.NewReplacer("ErrNoBenign", "errNoBenign", "ErrShape", "errShape")
	for _, name := range mirrored {
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: no longer in the adapter; fit.go mirrors code that is gone", name)
			continue
		}
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from fit.go", name)
			continue
		}
		if norm.Replace(w) != g {
			t.Errorf("%s differs from the adapter's:\nadapter:\n%s\neval:\n%s", name, w, g)
		}
	}
}

// decls returns the top-level declarations of files, printed without
// comments, keyed by "func name" (methods by their name too), "type name"
// or "const firstName".
func decls(t *testing.T, files ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, 0) // no comments
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			var key string
			switch d := d.(type) {
			case *ast.FuncDecl:
				key = "func " + d.Name.Name
			case *ast.GenDecl:
				if len(d.Specs) == 0 {
					continue
				}
				switch s := d.Specs[0].(type) {
				case *ast.TypeSpec:
					key = "type " + s.Name.Name
				case *ast.ValueSpec:
					key = d.Tok.String() + " " + s.Names[0].Name
				default:
					continue
				}
			}
			var b bytes.Buffer
			if err := printer.Fprint(&b, fset, d); err != nil {
				t.Fatal(err)
			}
			out[key] = b.String()
		}
	}
	return out
}
