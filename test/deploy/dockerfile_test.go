package deploy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type dockerfile struct {
	args    map[string]string // ARG defaults
	from    []string          // FROM images, ARGs resolved
	copies  []string          // COPY sources
	ldflags string
	lines   []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(repoPath("Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	d := dockerfile{args: map[string]string{}}
	var cont string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = strings.Join(strings.Fields(cont+line), " "), ""
		d.lines = append(d.lines, line)
		fields := strings.Fields(line)
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(fields[1], "="); ok {
				d.args[k] = v
			}
		case "FROM":
			img := os.Expand(fields[1], func(k string) string { return d.args[k] })
			d.from = append(d.from, img)
		case "COPY":
			if !strings.HasPrefix(fields[1], "--from") {
				d.copies = append(d.copies, fields[1:len(fields)-1]...)
			}
		}
		if m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(line); m != nil {
			d.ldflags = m[1]
		}
	}
	require.NoError(t, sc.Err())
	return d
}

func TestDockerfileIsPinnedAndCopiesTheWorkspace(t *testing.T) {
	d := readDockerfile(t)
	require.Len(t, d.from, 2, "a build stage and a runtime stage")
	for _, img := range d.from {
		assert.True(t, pinned(img), "FROM %s is not pinned", img)
	}
	assert.Contains(t, d.from[1], "distroless/static", "a minimal runtime image")
	assert.Contains(t, d.lines, "USER 65532:65532", "runs as non-root")
	assert.Contains(t, strings.Join(d.lines, "\n"), "CGO_ENABLED=0", "a static binary")

	// Every module of go.work has its go.mod and go.sum copied before the
	// sources (or the workspace does not load in the image).
	work, err := os.ReadFile(repoPath("go.work"))
	require.NoError(t, err)
	uses := regexp.MustCompile(`(?m)^\s+\./(\S+)$`).FindAllStringSubmatch(string(work), -1)
	require.NotEmpty(t, uses)
	assert.Contains(t, d.copies, "go.work")
	assert.Contains(t, d.copies, "go.work.sum")
	for _, u := range uses {
		assert.Contains(t, d.copies, u[1]+"/go.mod")
		assert.Contains(t, d.copies, u[1]+"/go.sum")
	}
	ignore, err := os.ReadFile(repoPath(".dockerignore"))
	require.NoError(t, err)
	for _, needed := range []string{"go.work", "pkg", "proto", "services", "connectors.json", "test/go.mod"} {
		assert.NotRegexp(t, `(?m)^`+regexp.QuoteMeta(needed)+`/?$`, string(ignore), ".dockerignore drops %s", needed)
	}
	assert.Regexp(t, `(?m)^\.git$`, string(ignore))
	assert.Regexp(t, `(?m)^\.env$`, string(ignore), "secrets stay out of the build context")
}

// The Dockerfile's build step, run with the local toolchain: the -X flags
// reach the version variables, and the binary's -probe works without a shell.
func TestDockerfileBuildBakesTheVersionIn(t *testing.T) {
	d := readDockerfile(t)
	require.NotEmpty(t, d.ldflags, "the build step passes -ldflags")
	flags := os.Expand(d.ldflags, func(k string) string {
		return map[string]string{"VERSION": "v9.8.7", "COMMIT": "c0ffee1"}[k]
	})
	bin := filepath.Join(t.TempDir(), "pollgrid")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", flags, "-o", bin, "./services/worker")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	out, err = exec.Command(bin, "-version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `^pollgrid worker v9\.8\.7 \(commit c0ffee1, go1\.\d+`, string(out))

	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/readyz", r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	probe := func(arg string, env ...string) int {
		c := exec.Command(bin, "-probe", arg)
		c.Env = env
		_ = c.Run()
		return c.ProcessState.ExitCode()
	}
	assert.Equal(t, 0, probe(srv.URL+"/readyz"))
	assert.Equal(t, 0, probe("/readyz", "HTTP_ADDR="+strings.TrimPrefix(srv.URL, "http://")), "a path asks HTTP_ADDR")
	status.Store(http.StatusServiceUnavailable)
	assert.Equal(t, 1, probe(srv.URL+"/readyz"))
	srv.Close()
	assert.Equal(t, 1, probe(srv.URL+"/readyz"), "nobody listening")

	assert.Contains(t, d.lines, `HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/pollgrid", "-probe", "/healthz"]`)
	assert.Contains(t, d.lines, `ENTRYPOINT ["/usr/local/bin/pollgrid"]`)
}

// TestBuildsNameTheirVersionUpstream: the Dockerfile's and the Makefile's
// -ldflags set upstream.Version, so a release calls upstreams as
// "pollgrid/<version>", not "pollgrid/dev". Each build's flags are run
// against pkg/upstream's TestVersionSetAtBuildTime.
func TestBuildsNameTheirVersionUpstream(t *testing.T) {
	const version = "v9.8.7"
	vars := map[string]string{"VERSION": version, "COMMIT": "c0ffee1"}
	dockerFlags := os.Expand(readDockerfile(t).ldflags, func(k string) string { return vars[k] })

	makeOut, err := exec.Command("make", "-C", root, "-n", "build", "VERSION="+version, "COMMIT=c0ffee1").CombinedOutput()
	require.NoError(t, err, "%s", makeOut)
	m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(string(makeOut))
	require.NotNil(t, m, "make build passes -ldflags:\n%s", makeOut)

	for name, flags := range map[string]string{"Dockerfile": dockerFlags, "Makefile": m[1]} {
		t.Run(name, func(t *testing.T) {
			assert.Contains(t, flags, "-X github.com/pollgrid/pollgrid/pkg/upstream.Version="+version)
			cmd := exec.Command("go", "test", "-count=1", "-v", "-ldflags", flags, "-run", "^TestVersionSetAtBuildTime$", "./pkg/upstream/")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "POLLGRID_WANT_VERSION="+version)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), "--- PASS: TestVersionSetAtBuildTime", "the test ran, not skipped:\n%s", out)
		})
	}
}
