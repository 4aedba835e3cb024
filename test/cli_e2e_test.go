package test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLIBesideRunningGateway runs the operator CLI while a gateway holds
// the embedded store (what `make run` does): keys, limits and usage go
// through the running gateway's admin API with a local admin key, limits
// subjects are validated, and a second `serve` on the same address says a
// gateway is already running.
func TestCLIBesideRunningGateway(t *testing.T) {
	s := startStack(t, stackOptions{})
	withKey := []string{"GATEWAY_ADMIN_KEY=" + s.Key}
	cli := func(env []string, args ...string) (string, int) {
		t.Helper()
		c := exec.Command(handlerBin, append(args, "--config", s.CfgPath)...)
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return string(out), code
	}

	out, code := cli(withKey, "keys", "create", "--team", "research", "--app", "cli", "--models", "gpt-4o-mini", "--secret-only")
	if code != 0 || !strings.HasPrefix(out, "fgw-") {
		t.Fatalf("keys create beside a running gateway: exit %d\n%s", code, out)
	}
	newKey := strings.TrimSpace(out)
	id := strings.TrimPrefix(strings.SplitN(newKey, ".", 2)[0], "fgw-")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/openai/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+newKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the key made through the running gateway: GET /models = %d", resp.StatusCode)
	}

	// The dev key file beside the store works as well as the variable.
	if err := os.WriteFile(filepath.Join(s.Dir, "dev-key"), []byte(s.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = cli(nil, "keys", "list", "--json")
	var keys []struct {
		ID   string `json:"id"`
		Team string `json:"team"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil || len(keys) != 2 {
		t.Fatalf("keys list --json with the dev key file: exit %d\n%s", code, out)
	}
	if out, code = cli(withKey, "keys", "get", "fgw-"+id); code != 0 || !strings.Contains(out, id) {
		t.Errorf("keys get: exit %d\n%s", code, out)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"set on a key", []string{"limits", "set", "--key", "fgw-" + id, "--rpm", "5"}, 0, "set limits for key " + id},
		{"set on an app", []string{"limits", "set", "--app", "research/cli", "--tpm", "1000"}, 0, "set limits for app research/cli"},
		{"unknown key", []string{"limits", "set", "--key", "0123456789ab", "--rpm", "5"}, 2, `no key "0123456789ab"`},
		{"app without team", []string{"limits", "set", "--app", "cli", "--rpm", "5"}, 2, "want team/app"},
		{"unknown team", []string{"limits", "set", "--team", "nosuch", "--rpm", "5"}, 2, `unknown team "nosuch"`},
		{"app of an unknown team", []string{"limits", "set", "--app", "nosuch/x", "--rpm", "5"}, 2, `unknown team "nosuch"`},
		{"usage report", []string{"usage", "report", "--format", "json"}, 0, "["},
		{"bad key id is a usage error", []string{"keys", "create", "--team", "research", "--app", "x", "--models", "nope"}, 2, "not served"},
	}
	for _, tt := range tests {
		out, code := cli(withKey, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %v: exit %d, want %d with %q\n%s", tt.name, tt.args, code, tt.code, tt.want, out)
		}
	}
	out, code = cli(withKey, "limits", "list", "--json")
	var limits []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &limits) != nil || len(limits) != 2 {
		t.Fatalf("limits list --json: exit %d\n%s", code, out)
	}
	if limits[0]["kind"] != "app" || limits[0]["id"] != "research/cli" || limits[0]["tpm"] != float64(1000) || limits[0]["rpm"] != nil ||
		limits[1]["kind"] != "key" || limits[1]["id"] != id || limits[1]["rpm"] != float64(5) {
		t.Errorf("limits list --json = %s, want snake_case kind/id/rpm/tpm/monthly_tokens rows", out)
	}
	if _, code = cli(withKey, "limits", "delete", "--key", id); code != 0 {
		t.Errorf("limits delete: exit %d", code)
	}

	// No admin credential: the error says how to give one.
	os.Remove(filepath.Join(s.Dir, "dev-key"))
	if out, code = cli(nil, "keys", "list"); code == 0 || !strings.Contains(out, "GATEWAY_ADMIN_KEY") {
		t.Errorf("keys list without an admin key: exit %d\n%s", code, out)
	}

	// A second gateway on the same config fails at once, saying why.
	start := time.Now()
	out, code = cli(nil, "serve")
	if code == 0 || !strings.Contains(out, "a gateway is already running on "+s.URL) || time.Since(start) > 10*time.Second {
		t.Errorf("second serve: exit %d after %v\n%s", code, time.Since(start), out)
	}

	// /healthz names the build.
	resp, err = http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h["status"] != "ok" || h["service"] != "foundry-gateway" || h["version"] == "" || !strings.HasPrefix(h["go"], "go1.") {
		t.Errorf("/healthz = %v, want status, service, version and go", h)
	}
}
