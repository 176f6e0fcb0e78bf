package natsconn

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var natsVariable = regexp.MustCompile(`NATS_[A-Z_]+[A-Z]`)

// Every NATS_* variable this package reads is in the docs the operators
// read: the services' environment (connector-framework.md), pollctl's
// connection section (operate.md) and the production notes (deploy.md);
// and pollctl's section names no variable the package does not read.
func TestEveryVariableIsDocumented(t *testing.T) {
	read := Variables()

	// Nothing in the package names a NATS_* variable outside the table.
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				for _, v := range natsVariable.FindAllString(lit.Value, -1) {
					assert.Contains(t, read, v, "%s names %s, which is not a Setting's variable", fset.Position(lit.Pos()), v)
				}
			}
			return true
		})
	}

	doc := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
		require.NoError(t, err)
		return string(b)
	}
	for _, name := range []string{"connector-framework.md", "operate.md", "deploy.md"} {
		text := doc(name)
		for _, v := range read {
			assert.Contains(t, text, "`"+v+"`", "docs/%s does not name %s", name, v)
		}
	}

	operate := doc("operate.md")
	start := strings.Index(operate, "**Connecting**")
	require.NotEqual(t, -1, start, "operate.md has a **Connecting** section")
	section := operate[start:]
	if end := strings.Index(section, "\n### "); end != -1 {
		section = section[:end]
	}
	for _, v := range natsVariable.FindAllString(section, -1) {
		assert.True(t, slices.Contains(read, v), "operate.md's Connecting section names %s, which nothing reads", v)
	}
}
