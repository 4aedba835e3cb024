package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs handler with args and an environment that names no config.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, &o, &e)
	return o.String(), e.String(), err
}

// TestCLIConventions covers the command-line conventions: help exits 0
// (without "flag: help requested") and needs no config, each subcommand
// lists only its own flags, stray arguments and foreign flags are usage
// errors (exit 2), and messages speak flag names.
func TestCLIConventions(t *testing.T) {
	// No gateway.yaml here: help must not need a config.
	t.Chdir(t.TempDir())
	tests := []struct {
		name     string
		args     []string
		exit     int
		out      []string // on stdout (exit 0) or in the error (exit 2)
		notOut   []string
		noStderr bool
	}{
		{"help", []string{"--help"}, 0, []string{"Usage:", "handler keys create", "handler limits set", "handler version"}, nil, true},
		{"-h", []string{"-h"}, 0, []string{"Usage:"}, nil, true},
		{"help word", []string{"help"}, 0, []string{"Usage:"}, nil, true},
		{"keys --help without a config", []string{"keys", "--help"}, 0, []string{"handler keys create", "handler keys revoke"}, []string{"help requested"}, true},
		{"limits --help without a config", []string{"limits", "--help"}, 0, []string{"handler limits set", "handler limits delete"}, nil, true},
		{"usage -h", []string{"usage", "-h"}, 0, []string{"handler usage report"}, nil, true},
		{"keys list -h lists only list's flags", []string{"keys", "list", "-h"}, 0, []string{"Usage: handler keys list", "-team", "-json", "-config"}, []string{"-max-n", "-overlap", "-secret-only", "help requested"}, true},
		{"keys create --help", []string{"keys", "create", "--help"}, 0, []string{"-max-output-tokens", "-over-cap", "-expires-in"}, []string{"-overlap"}, true},
		{"keys rotate -h", []string{"keys", "rotate", "-h"}, 0, []string{"-overlap", "-expires-at"}, []string{"-team", "-models"}, true},
		{"limits set -h", []string{"limits", "set", "-h"}, 0, []string{"-rpm", "-monthly-tokens", "-app"}, []string{"-json"}, true},
		{"serve --help", []string{"serve", "--help"}, 0, []string{"Usage: handler serve", "-config"}, nil, true},
		{"sim -h", []string{"sim", "-h"}, 0, []string{"-listen"}, nil, true},
		{"package -h", []string{"package", "-h"}, 0, []string{"-out"}, nil, true},
		{"version", []string{"version"}, 0, []string{"handler ", "go1."}, nil, true},
		{"version --json", []string{"version", "--json"}, 0, []string{`"service":"foundry-gateway"`, `"go":"go1.`}, nil, true},

		{"no command", nil, 2, []string{"missing command"}, nil, false},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command frobnicate"}, nil, false},
		{"keys without subcommand", []string{"keys"}, 2, []string{"want a subcommand: create, list, get, rotate, revoke"}, nil, false},
		{"unknown subcommand", []string{"keys", "frob"}, 2, []string{`unknown subcommand "frob"`}, nil, false},
		{"stray positional", []string{"keys", "list", "extra"}, 2, []string{`keys list: unexpected argument "extra"`}, nil, false},
		{"stray positional after flags", []string{"limits", "list", "--json", "extra"}, 2, []string{`unexpected argument "extra"`}, nil, false},
		{"two ids", []string{"keys", "get", "a", "b"}, 2, []string{`unexpected argument "b"`}, nil, false},
		{"missing id", []string{"keys", "revoke"}, 2, []string{"keys revoke: want ID"}, nil, false},
		{"foreign flag", []string{"keys", "list", "--overlap", "1h"}, 2, []string{"flag provided but not defined: -overlap", "handler keys list --help"}, nil, false},
		{"create-only flag on get", []string{"keys", "get", "abc", "--admin"}, 2, []string{"not defined: -admin"}, nil, false},
		{"over-cap without cap", []string{"keys", "create", "--team", "t", "--app", "a", "--over-cap", "reject"}, 2, []string{"--over-cap needs --max-output-tokens"}, []string{"overCap"}, false},
		{"required flags", []string{"keys", "create", "--team", "t"}, 2, []string{"--team and --app are required"}, nil, false},
		{"two expiries", []string{"keys", "create", "--team", "t", "--app", "a", "--expires-in", "1h", "--expires-at", "2030-01-01T00:00:00Z"}, 2, []string{"--expires-in or --expires-at, not both"}, nil, false},
		{"bad expiry time", []string{"keys", "rotate", "abc", "--expires-at", "soon"}, 2, []string{"--expires-at: want an RFC 3339 time"}, nil, false},
		{"limits subject", []string{"limits", "set", "--key", "k", "--team", "t", "--rpm", "1"}, 2, []string{"exactly one of --key, --app, --team"}, nil, false},
		{"limits value", []string{"limits", "set", "--team", "t", "--rpm", "-1"}, 2, []string{`--rpm "-1": want a whole number >= 0`}, nil, false},
		{"limits nothing to set", []string{"limits", "set", "--team", "t"}, 2, []string{"at least one of --rpm, --tpm, --monthly-tokens"}, nil, false},
		{"serve positional", []string{"serve", "extra"}, 2, []string{`serve: unexpected argument "extra"`}, nil, false},
		{"version flag", []string{"version", "--bogus"}, 2, []string{"not defined: -bogus"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := runCLI(t, nil, tt.args...)
			got := out
			if tt.exit != 0 {
				if err == nil {
					t.Fatalf("no error; stdout:\n%s", out)
				}
				got = err.Error()
			} else if err != nil {
				t.Fatalf("error %v; stderr:\n%s", err, stderr)
			}
			if code := exitCode(err); err != nil && code != tt.exit {
				t.Errorf("exit code %d, want %d (%v)", code, tt.exit, err)
			}
			for _, w := range tt.out {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in:\n%s", w, got)
				}
			}
			for _, w := range tt.notOut {
				if strings.Contains(got, w) {
					t.Errorf("did not want %q in:\n%s", w, got)
				}
			}
			if tt.noStderr && stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
		})
	}
}

// TestCLIOnStore runs keys and limits against an embedded store that no
// gateway holds, with subject checks and the JSON field style.
func TestCLIOnStore(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(`store: { kind: embedded, path: `+filepath.Join(dir, "gw.db")+` }
queue: { kind: embedded, path: `+filepath.Join(dir, "q.db")+` }
limits: { teams: { finance: { rpm: 10 } } }
backends:
  - { name: sim, url: "http://127.0.0.1:1", auth: { none: true } }
models:
  gpt-4o-mini: { targets: [ { backend: sim } ] }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GATEWAY_CONFIG": cfg}
	out, _, err := runCLI(t, env, "keys", "create", "--team", "research", "--app", "nb", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.ID == "" {
		t.Fatalf("keys create --json: %v\n%s", err, out)
	}
	tests := []struct {
		args []string
		want string // in stdout, or in the usage error
		ok   bool
	}{
		{[]string{"limits", "set", "--key", "fgw-" + k.ID, "--rpm", "3"}, "set limits for key " + k.ID, true},
		{[]string{"limits", "set", "--team", "finance", "--tpm", "100"}, "set limits for team finance", true}, // known from limits.teams
		{[]string{"limits", "set", "--app", "research/nb", "--monthly-tokens", "0"}, "set limits for app research/nb", true},
		{[]string{"limits", "set", "--team", "ghost", "--rpm", "1"}, `unknown team "ghost"`, false},
		{[]string{"limits", "set", "--app", "ghost/x", "--rpm", "1"}, `unknown team "ghost"`, false},
		{[]string{"limits", "set", "--app", "research", "--rpm", "1"}, "want team/app", false},
		{[]string{"limits", "set", "--key", "fgw-000000000000", "--rpm", "1"}, `no key "fgw-000000000000"`, false},
		{[]string{"limits", "delete", "--key", "000000000000"}, "deleted limits of key 000000000000", true}, // a key that is gone can still be cleaned up
		{[]string{"keys", "create", "--team", "research", "--app", "x", "--max-output-tokens", "-5"}, "--max-output-tokens must not be negative", false},
	}
	for _, tt := range tests {
		out, _, err := runCLI(t, env, tt.args...)
		got := out
		if err != nil {
			got = err.Error()
			if tt.ok || exitCode(err) != 2 {
				t.Errorf("%v: %v (exit %d)", tt.args, err, exitCode(err))
			}
		} else if !tt.ok {
			t.Errorf("%v: no error; stdout %s", tt.args, out)
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("%v: want %q in %q", tt.args, tt.want, got)
		}
	}
	out, _, err = runCLI(t, env, "limits", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"kind":"app","id":"research/nb","monthly_tokens":0},{"kind":"key","id":"` + k.ID + `","rpm":3},{"kind":"team","id":"finance","tpm":100}]`
	if strings.TrimSpace(out) != want {
		t.Errorf("limits list --json =\n%s\nwant\n%s", out, want)
	}
	if _, _, err := runCLI(t, env, "keys", "get", "nope-nope"); err == nil || errors.Is(err, errHelpShown) {
		t.Errorf("keys get of a bad id: %v", err)
	}
}
