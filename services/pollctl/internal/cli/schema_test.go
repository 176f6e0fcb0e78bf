package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pollgrid/pollgrid/pkg/config"
)

func runPollctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Env: config.MapEnv(nil)})
	return code, out.String(), errOut.String()
}

// pollctl schema prints the schema the repository ships for editors, and
// needs no NATS to do it.
func TestSchemaPrintsTheShippedSchema(t *testing.T) {
	code, out, errOut := runPollctl(t, "schema")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "connectors.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if out != string(shipped) {
		t.Errorf("pollctl schema is not docs/connectors.schema.json: run make docs")
	}
	var schema map[string]any
	if err := json.Unmarshal([]byte(out), &schema); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema is %v, want draft 2020-12", schema["$schema"])
	}
}

// pollctl schema TYPE lists the type's fields as a person reads them; with
// --json, the type's part of the schema.
func TestSchemaOfOneType(t *testing.T) {
	code, out, errOut := runPollctl(t, "schema", "github-issues")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"github-issues: The issues of one GitHub repository",
		"\nowner (string, required)\n    User or organisation:",
		"\ntoken (string, secret: write \"${VAR}\")\n",
		"\nper_page (integer, default 30)\n",
		"From 1 to 100.",
		"\nstate (string, default \"all\")\n",
		"\nallow_hosts (list)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if prose, want := strings.Join(strings.Fields(out), " "), "a closed issue simply stops appearing. One of `open`, `closed` or `all`."; !strings.Contains(prose, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}

	code, out, errOut = runPollctl(t, "schema", "http-json", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var schema struct {
		Properties map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	if err := json.Unmarshal([]byte(out), &schema); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if _, ok := schema.Properties["pagination"].Properties["max_pages"]; !ok {
		t.Errorf("the http-json schema has no pagination.max_pages:\n%s", out)
	}
	if strings.Join(schema.Required, ",") != "url,items,id" {
		t.Errorf("required %v, want url, items, id", schema.Required)
	}
}

func TestSchemaOfAnUnknownTypeExits2(t *testing.T) {
	code, _, errOut := runPollctl(t, "schema", "weather-nooa")
	if code != ExitUsage {
		t.Fatalf("exit %d, want %d: %s", code, ExitUsage, errOut)
	}
	if want := `unknown connector type "weather-nooa" (known: datadog-events, demo, feed,`; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q lacks %q", errOut, want)
	}
	if want := `did you mean "weather-noaa"?`; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q lacks %q", errOut, want)
	}
}
