package compose

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// These run in make test, with no engine: make images and make push, run
// with an echo in place of docker, name the images docker-compose.yml and
// the Helm chart run, and the Dockerfile builds where no registry answers.

// images are what make images builds, in its order: the three services and
// pollctl, which compose's apply service and the chart's Job run.
var images = []string{"scheduler", "worker", "aggregator", "pollctl"}

// composeService is the docker-compose.yml service that runs an image.
var composeService = map[string]string{"scheduler": "scheduler", "worker": "worker", "aggregator": "aggregator", "pollctl": "apply"}

// makeWithEcho runs a make target with DOCKER=echo and returns the docker
// commands it would have run, one a line.
func makeWithEcho(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", "../..", "--no-print-directory", "-s", "DOCKER=echo docker"}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make %v: %s", args, out)
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if line := strings.Join(strings.Fields(sc.Text()), " "); strings.HasPrefix(line, "docker ") {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestMakeImagesNamesWhatComposeAndTheChartRun(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	data, err := os.ReadFile("../../deploy/helm/pollgrid/Chart.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &chart))
	var values struct {
		Image struct {
			Registry string `json:"registry"`
			Tag      string `json:"tag"`
		} `json:"image"`
	}
	data, err = os.ReadFile("../../deploy/helm/pollgrid/values.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &values))
	require.Empty(t, values.Image.Tag, "the chart's tag defaults to its appVersion")

	opts, err := cli.NewProjectOptions([]string{"../../docker-compose.yml"}, cli.WithWorkingDirectory("../.."),
		cli.WithEnv(nil), cli.WithInterpolation(true))
	require.NoError(t, err)
	project, err := opts.LoadProject(context.Background())
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		tag  string
		want func(svc string) string
	}{
		"the chart's images, tagged with its appVersion": {
			tag: chart.AppVersion, want: func(svc string) string { return values.Image.Registry + "/" + svc + ":" + chart.AppVersion },
		},
		"docker-compose.yml's images, tagged dev": {
			tag: "dev", want: func(img string) string { return project.Services[composeService[img]].Image },
		},
	} {
		t.Run(name, func(t *testing.T) {
			builds := makeWithEcho(t, "images", "TAG="+tc.tag)
			require.Len(t, builds, len(images), "one docker build per image")
			for i, svc := range images {
				assert.Contains(t, builds[i], "docker build ")
				assert.Contains(t, builds[i], " --build-arg SERVICE="+svc+" ")
				assert.Contains(t, builds[i], " --build-arg VERSION="+tc.tag+" ", "the binaries print the tag with -version")
				assert.True(t, strings.HasSuffix(builds[i], " -t "+tc.want(svc)+" ."), "%s builds %q, want -t %s", svc, builds[i], tc.want(svc))
			}
		})
	}

	t.Run("make push pushes what make images built", func(t *testing.T) {
		lines := makeWithEcho(t, "push", "REGISTRY=registry.example.com/pollgrid", "TAG=v9.8.7")
		var pushes []string
		for _, l := range lines {
			if strings.HasPrefix(l, "docker push ") {
				pushes = append(pushes, strings.TrimPrefix(l, "docker push "))
			} else {
				assert.Contains(t, l, " -t registry.example.com/pollgrid/")
			}
		}
		want := make([]string, len(images))
		for i, svc := range images {
			want[i] = "registry.example.com/pollgrid/" + svc + ":v9.8.7"
		}
		assert.Equal(t, want, pushes)
	})
}

// A "# syntax=" directive makes the build fetch the Dockerfile frontend from
// Docker Hub first: no build works where no registry answers.
func TestDockerfileNeedsNoFrontendFromARegistry(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	// Parser directives are comments before the first instruction.
	directive := regexp.MustCompile(`(?i)^#\s*syntax\s*=`)
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			break
		}
		assert.NotRegexp(t, directive, line, "the Dockerfile names a frontend image: builds need Docker Hub")
	}
}
