package service

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// Version and Commit are baked into a release binary by the linker (the
// Dockerfile does this); they must be package variables for -X to reach them:
//
//	go build -ldflags "-X github.com/pollgrid/pollgrid/pkg/service.Version=v1.2.3 \
//	  -X github.com/pollgrid/pollgrid/pkg/service.Commit=abc1234" ./services/worker
var (
	Version = "dev"
	Commit  = "unknown"
)

// probeTimeout bounds one -probe request: a container healthcheck must
// answer well inside its own timeout.
const probeTimeout = 3 * time.Second

// VersionString is what -version prints.
func VersionString(service string) string {
	return fmt.Sprintf("pollgrid %s %s (commit %s, %s)", service, Version, Commit, runtime.Version())
}

// BuildInfo is the pollgrid_build_info gauge: always 1, the build in labels,
// so a dashboard can show which version each replica runs.
func BuildInfo(service string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pollgrid_build_info",
		Help: "Always 1; the labels say which build of which service this is.",
		ConstLabels: prometheus.Labels{
			"service": service, "version": Version, "commit": Commit, "goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}

// buildFlags adds -version and -probe to a service's flags. The returned
// function runs after parsing: done is true when one of them was given and
// the process should exit with code.
func buildFlags(fs *flag.FlagSet, svc Service, lookup config.Env) func(stdout, stderr io.Writer) (code int, done bool) {
	version := fs.Bool("version", false, "print the version and commit, exit 0")
	probe := fs.String("probe", "", "GET this URL (or a path such as /healthz on HTTP_ADDR) and exit 0 on a 2xx answer, 1 otherwise: a container healthcheck for images without a shell")
	return func(stdout, stderr io.Writer) (int, bool) {
		switch {
		case *version:
			fmt.Fprintln(stdout, VersionString(svc.Name))
			return 0, true
		case *probe != "":
			target := *probe
			if strings.HasPrefix(target, "/") {
				target = probeURL(get(lookup, "HTTP_ADDR", svc.DefaultHTTP), target)
			}
			if err := Probe(context.Background(), target); err != nil {
				fmt.Fprintf(stderr, "pollgrid %s: probe: %v\n", svc.Name, err)
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
}

// probeURL turns a listen address (":8082", "0.0.0.0:8082", "10.0.0.5:8082")
// and a path into the URL a probe inside the same container asks.
func probeURL(addr, path string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + path
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path
}

// Probe asks url once and reports an error unless it answers 2xx.
func Probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w (write http://127.0.0.1:8082/healthz or /healthz)", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
