package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/natsconn"
)

// envName is how the name of an environment variable looks, wherever text
// names one: upper-case words joined by "_" (LOG_LEVEL, NATS_URL).
var envName = regexp.MustCompile(`\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`)

// isEnvName reports whether s is a variable's name and nothing else.
func isEnvName(s string) bool { return s != "" && envName.FindString(s) == s }

// places maps a variable to where it was first found ("pkg/service/run.go:81").
type places map[string]string

func (p places) add(name, where string) {
	if _, ok := p[name]; !ok {
		p[name] = where
	}
}

func (p places) sorted() []string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// rel is path relative to the repository, for messages.
func rel(path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return filepath.ToSlash(r)
	}
	return path
}

// goFiles parses every Go file below dir that keep accepts.
func goFiles(t *testing.T, dir string, keep func(path string) bool, visit func(path string, fset *token.FileSet, f *ast.File)) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || !keep(path) {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		visit(path, fset, f)
		return nil
	})
	require.NoError(t, err)
}

// readByCode is every environment variable the production code (pkg/ and
// services/, tests and generated code left out) reads. A variable is read
// through a lookup of its name (os.Getenv, a config.Env, service.Int and
// its kind, natsconn's table), and the name is a string literal of its own
// everywhere: a source that builds one ("CONNECTOR_" + field) would hide it
// from this check, so none does.
func readByCode(t *testing.T) places {
	t.Helper()
	read := places{}
	production := func(path string) bool {
		return !strings.HasSuffix(path, "_test.go") && !strings.HasSuffix(path, ".pb.go")
	}
	for _, dir := range []string{"pkg", "services"} {
		goFiles(t, repoPath(dir), production, func(path string, fset *token.FileSet, f *ast.File) {
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil && isEnvName(v) {
						read.add(v, rel(path)+":"+strconv.Itoa(fset.Position(lit.Pos()).Line))
					}
				}
				return true
			})
		})
	}
	require.Contains(t, read, "WORKER_ACK_WAIT", "the scan finds the services' variables")
	require.Contains(t, read, "CONNECTOR_INTERVAL", "the scan finds pkg/config's variables")
	return read
}

// readByTests is what the test module reads with os.Getenv or os.LookupEnv
// (the knobs of make bench and make test).
func readByTests(t *testing.T) places {
	t.Helper()
	read := places{}
	goFiles(t, repoPath("test"), func(string) bool { return true }, func(path string, fset *token.FileSet, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "os" {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				read.add(v, rel(path)+":"+strconv.Itoa(fset.Position(lit.Pos()).Line))
			}
			return true
		})
	})
	require.Contains(t, read, "BENCH_QUICK", "the scan finds make bench's knobs")
	return read
}

func readFile(t *testing.T, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(repoPath(parts...))
	require.NoError(t, err)
	return string(b)
}

// interpolated is every ${VAR} or ${VAR:-default} of docker-compose.yml,
// with its default ("" when it has none).
func interpolated(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	re := regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}`)
	for _, m := range re.FindAllStringSubmatch(readFile(t, "docker-compose.yml"), -1) {
		if isEnvName(m[1]) {
			out[m[1]] = m[2]
		}
	}
	require.Contains(t, out, "WORKER_ACK_WAIT")
	return out
}

// docs are the files that tell people which variables to set.
func docs(t *testing.T) []string {
	t.Helper()
	md, err := filepath.Glob(repoPath("docs", "*.md"))
	require.NoError(t, err)
	chart, err := filepath.Glob(repoPath("deploy", "helm", "pollgrid", "templates", "*"))
	require.NoError(t, err)
	files := append([]string{repoPath("README.md"), repoPath(".env.example"), repoPath("docker-compose.yml"),
		repoPath("deploy", "helm", "pollgrid", "values.yaml"), repoPath("deploy", "helm", "pollgrid", "README.md")}, md...)
	return append(files, chart...)
}

// notVariables are names the docs use that look like variables and are not.
var notVariables = map[string]string{
	"CLK_TCK": "the kernel's clock tick (docs/benchmarks.md)",
}

// readElsewhere are variables the docs name that neither pollgrid's code
// nor its deployment files read: read by a library from the process
// environment.
var readElsewhere = map[string]string{
	"OTEL_EXPORTER_OTLP_HEADERS": "the OTLP exporter",
	"OTEL_RESOURCE_ATTRIBUTES":   "the OpenTelemetry SDK",
	"OTEL_SERVICE_NAME":          "the OpenTelemetry SDK (and overridden: docs/observability.md)",
}

// Every environment variable the code reads is named in the docs an
// operator reads (README.md, docs/*.md). pkg/natsconn's own
// TestEveryVariableIsDocumented holds its NATS_* variables to the three docs
// that must name them, so they are left to it here.
func TestEveryVariableTheCodeReadsIsDocumented(t *testing.T) {
	named := map[string]bool{}
	md, err := filepath.Glob(repoPath("docs", "*.md"))
	require.NoError(t, err)
	for _, path := range append(md, repoPath("README.md")) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, v := range envName.FindAllString(string(b), -1) {
			named[v] = true
		}
	}
	read := readByCode(t)
	for _, v := range read.sorted() {
		if slices.Contains(natsconn.Variables(), v) {
			continue
		}
		assert.True(t, named[v], "%s reads %s, which no doc names: document it (docs/connector-framework.md, "+
			"\"Config reference\", has the services' variables)", read[v], v)
	}
}

// Every variable the docs, .env.example, docker-compose.yml and the Helm
// chart name is read by something: pollgrid's code, its tests and make
// bench, docker compose, the image build, nats-server's config, or a
// library; or is a connector's ${VAR} secret as its README names it.
func TestEveryVariableTheDocsNameIsRead(t *testing.T) {
	known := map[string]string{}
	for v, where := range readByCode(t) {
		known[v] = where
	}
	for _, v := range natsconn.Variables() {
		known[v] = "pkg/natsconn"
	}
	for v, where := range readByTests(t) {
		known[v] = where
	}
	for v := range interpolated(t) {
		known[v] = "docker-compose.yml"
	}
	for _, m := range regexp.MustCompile(`(?m)^(?:ARG|ENV)\s+(.*)$`).FindAllStringSubmatch(readFile(t, "Dockerfile"), -1) {
		for _, field := range strings.Fields(m[1]) {
			name, _, _ := strings.Cut(field, "=")
			known[name] = "Dockerfile"
		}
	}
	for _, m := range regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(readFile(t, "deploy", "nats", "pollgrid.conf"), -1) {
		known[m[1]] = "deploy/nats/pollgrid.conf"
	}
	readmes, err := filepath.Glob(repoPath("pkg", "connectors", "*", "README.md"))
	require.NoError(t, err)
	for _, path := range append(readmes, repoPath("connectors.json")) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`).FindAllStringSubmatch(string(b), -1) {
			known[m[1]] = rel(path) + " (a secret)"
		}
	}
	for v, what := range readElsewhere {
		known[v] = what
	}

	for _, path := range docs(t) {
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		seen := map[string]bool{}
		for _, v := range envName.FindAllString(string(b), -1) {
			if seen[v] || notVariables[v] != "" || strings.HasPrefix(v, "GF_") && rel(path) == "docker-compose.yml" {
				continue // GF_*: Grafana's own settings, for its container
			}
			seen[v] = true
			_, ok := known[v]
			assert.True(t, ok, "%s names %s, which nothing reads: remove it, or correct the name", rel(path), v)
		}
	}
}

// What docker-compose.yml sets for a pollgrid container is read by it.
func TestComposeSetsNothingTheServicesIgnore(t *testing.T) {
	read := readByCode(t)
	p := loadCompose(t)
	for svc := range goServices {
		for v := range p.Services[svc].Environment {
			_, ok := read[v]
			assert.True(t, ok || slices.Contains(natsconn.Variables(), v),
				"docker-compose.yml sets %s for %s, which the services do not read: remove it", v, svc)
		}
	}
}

// .env.example lists every variable docker-compose.yml interpolates, each
// with the default docker-compose.yml gives it; and the secrets it shows are
// named as the connector READMEs name them.
func TestEnvExampleShowsTheDefaults(t *testing.T) {
	example := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^#?\s*([A-Z][A-Z0-9_]*)=(.*)$`).FindAllStringSubmatch(readFile(t, ".env.example"), -1) {
		example[m[1]] = strings.TrimSpace(m[2])
	}
	for v, def := range interpolated(t) {
		got, ok := example[v]
		if !assert.True(t, ok, ".env.example does not show %s, which docker-compose.yml reads (default %q)", v, def) {
			continue
		}
		assert.Equal(t, def, got, ".env.example shows %s=%s, but docker-compose.yml's default is %q", v, got, def)
	}

	secrets := map[string]bool{}
	readmes, err := filepath.Glob(repoPath("pkg", "connectors", "*", "README.md"))
	require.NoError(t, err)
	for _, path := range readmes {
		for _, m := range regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`).FindAllStringSubmatch(readFile(t, rel(path)), -1) {
			secrets[m[1]] = true
		}
	}
	read := readByCode(t)
	interp := interpolated(t)
	for v := range example {
		_, isRead := read[v]
		_, isInterpolated := interp[v]
		assert.True(t, isRead || isInterpolated || secrets[v],
			".env.example shows %s, which is neither read by the services nor docker-compose.yml, nor a connector README's secret", v)
	}
}

// The README's layout table names every folder of pkg/, services/, deploy/
// and test/, so a newcomer finds each from it.
func TestReadmeLayoutNamesEveryFolder(t *testing.T) {
	readme := readFile(t, "README.md")
	start := strings.Index(readme, "## Layout")
	require.NotEqual(t, -1, start, "README.md has a Layout section")
	layout := readme[start+len("## Layout"):]
	if end := strings.Index(layout, "\n## "); end != -1 {
		layout = layout[:end]
	}
	ignored := map[string]bool{}
	for _, line := range strings.Split(readFile(t, ".gitignore"), "\n") {
		if strings.HasSuffix(line, "/") {
			ignored[strings.Trim(line, "/")] = true
		}
	}
	for _, top := range []string{"pkg", "services", "deploy", "test"} {
		entries, err := os.ReadDir(repoPath(top))
		require.NoError(t, err)
		for _, e := range entries {
			dir := top + "/" + e.Name()
			if !e.IsDir() || ignored[dir] {
				continue
			}
			named := regexp.MustCompile("`" + regexp.QuoteMeta(dir) + "[`/]").MatchString(layout)
			assert.True(t, named, "README.md's Layout table does not name %s: add a row (or add it to a row) saying what it is", dir)
		}
	}
}

// make help lists every target that has a "## description", and every
// .PHONY target has a rule.
func TestMakeHelpListsEveryTarget(t *testing.T) {
	makefile := readFile(t, "Makefile")
	rules := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Za-z0-9_.-]+):`).FindAllStringSubmatch(makefile, -1) {
		rules[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`(?m)^\.PHONY:(.*)$`).FindAllStringSubmatch(makefile, -1) {
		for _, target := range strings.Fields(m[1]) {
			assert.True(t, rules[target], "Makefile: .PHONY names %s, which has no rule", target)
		}
	}

	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	cmd := exec.Command("make", "--no-print-directory", "-s", "help")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make help: %s", out)
	listed := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if fields := strings.Fields(line); len(fields) > 0 {
			listed[fields[0]] = true
		}
	}
	described := regexp.MustCompile(`(?m)^([A-Za-z0-9_.-]+):.*## `).FindAllStringSubmatch(makefile, -1)
	require.NotEmpty(t, described)
	for _, m := range described {
		assert.True(t, listed[m[1]], "make help does not list %s", m[1])
	}
}
