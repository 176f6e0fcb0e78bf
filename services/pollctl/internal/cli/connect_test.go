package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/natsconn"
)

// The connection flags map onto pkg/natsconn's settings, a flag given wins
// over its variable, and pollctl alone falls back to the selected context.
func TestConnectionFlags(t *testing.T) {
	home := t.TempDir()
	write := func(path, body string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write(filepath.Join(home, ".config/nats/context/selected.json"), `{"url": "nats://selected:4222"}`)
	write(filepath.Join(home, ".config/nats/context.txt"), "selected")
	jsonContext := write(filepath.Join(t.TempDir(), "ops.json"), `{"url": "nats://from-a-path:4222"}`)
	creds := write(filepath.Join(t.TempDir(), "ops.creds"), "-")

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantURL string
		wantErr string
	}{
		{name: "--server over NATS_URL", env: map[string]string{"NATS_URL": "nats://env:4222"}, args: []string{"-s", "nats://flag:4222"}, wantURL: "nats://flag:4222"},
		{name: "NATS_URL when no flag", env: map[string]string{"NATS_URL": "nats://env:4222"}, wantURL: "nats://env:4222"},
		{name: "nothing given: the selected context", env: map[string]string{}, wantURL: "nats://selected:4222"},
		{name: "a variable given: not the selected context", env: map[string]string{"NATS_INBOX_PREFIX": "_INBOX_ops"}, wantURL: "nats://127.0.0.1:4222"},
		{name: "NATS_CONTEXT as a path to a .json", env: map[string]string{"NATS_CONTEXT": jsonContext}, wantURL: "nats://from-a-path:4222"},
		{name: "--context as a path to a .json", args: []string{"--context", jsonContext}, wantURL: "nats://from-a-path:4222"},
		{name: "--user and NATS_CREDS are two ways", env: map[string]string{"NATS_CREDS": creds}, args: []string{"--user", "u", "--password", "p"},
			wantErr: "NATS credentials come from --user/--password and NATS_CREDS: give one way to authenticate"},
		{name: "NATS_USER and NATS_PASSWORD are read", env: map[string]string{"NATS_USER": "u", "NATS_TOKEN": "t"},
			wantErr: "NATS_USER gives a user without a password"},
		{name: "--tlscert without --tlskey", args: []string{"--tlscert", creds}, wantErr: "--tlscert is set without NATS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HOME": home}
			for k, v := range tt.env {
				env[k] = v
			}
			var c connFlags
			fs := pflag.NewFlagSet("pollctl", pflag.ContinueOnError)
			c.register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			d, err := natsconn.New(c.options(config.MapEnv(env)), config.MapEnv(env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.URL() != tt.wantURL {
				t.Errorf("URL %s, want %s", d.URL(), tt.wantURL)
			}
		})
	}
}

// --help names each flag's variable and never shows the environment's
// values: a password or token exported for pollctl stays out of it.
func TestHelpShowsNoSecret(t *testing.T) {
	var out, errOut bytes.Buffer
	env := config.MapEnv(map[string]string{"NATS_PASSWORD": "s3cret-pw", "NATS_TOKEN": "s3cret-token", "NATS_URL": "nats://u:s3cret-url@h:4222"})
	code := Main([]string{"--help"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Env: env})
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	help := out.String()
	for _, secret := range []string{"s3cret-pw", "s3cret-token", "s3cret-url"} {
		if strings.Contains(help, secret) {
			t.Errorf("--help shows %s:\n%s", secret, help)
		}
	}
	for _, want := range []string{"--password string", "(NATS_PASSWORD)", "--inbox-prefix string", "(NATS_INBOX_PREFIX)", "-s, --server string"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
}

// A NATS that does not answer: exit 4, and the reason names the setting.
func TestUnreachableNATSExits4(t *testing.T) {
	var out, errOut bytes.Buffer
	env := config.MapEnv(map[string]string{"HOME": t.TempDir()})
	code := Main([]string{"--server", "nats://127.0.0.1:1", "list"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Env: env})
	if code != ExitUnavailable {
		t.Fatalf("exit %d, want %d: %s", code, ExitUnavailable, errOut.String())
	}
	if want := "connect to NATS at nats://127.0.0.1:1: nothing accepts connections at --server"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q lacks %q", errOut.String(), want)
	}
}
