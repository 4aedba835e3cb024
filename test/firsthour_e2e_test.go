package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/azurite"
)

// firstHourCommands returns the `bin/handler …` commands of the first sh
// block under "## First hour in Azure" in docs/azure.md, as argument lists
// (after bin/handler), with the name of the shell variable each one's
// output is assigned to ("" when it is not captured).
func firstHourCommands(t *testing.T) (cmds [][]string, captures []string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "azure.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## First hour in Azure\n")
	if !ok {
		t.Fatal(`docs/azure.md has no "## First hour in Azure" section`)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the First hour section has no ```sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		capture := ""
		if name, inner, ok := strings.Cut(line, "=$("); ok && !strings.Contains(name, " ") {
			capture, line = name, strings.TrimSuffix(inner, ")")
		}
		rest, ok := strings.CutPrefix(line, "bin/handler ")
		if !ok {
			continue
		}
		cmds = append(cmds, shellWords(t, rest))
		captures = append(captures, capture)
	}
	return cmds, captures
}

// shellWords splits a command line on spaces, honouring double quotes
// (enough for the documented commands; anything fancier fails the test).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	if strings.ContainsAny(s, "'`\\|;&<>") {
		t.Fatalf("documented command %q uses shell syntax this test does not run", s)
	}
	var words []string
	for _, f := range strings.Fields(s) {
		words = append(words, strings.Trim(f, `"`))
	}
	return words
}

// TestFirstHourInAzure walks the first-hour commands of docs/azure.md
// against Azurite: the admin key is made with the shipped Azure config and
// ONLY the table setting in the environment (no FOUNDRY_*, no Service Bus
// settings, which the full config load would demand), then `handler smoke`
// checks a local gateway on the same tables in front of the simulator.
// Azurite's table service speaks plain http, where the SDK refuses bearer
// tokens, so the table setting is the connection-string form
// (GatewayTables) instead of GatewayTables__tableServiceUri + az login.
func TestFirstHourInAzure(t *testing.T) {
	cmds, captures := firstHourCommands(t)
	if len(cmds) != 2 || cmds[0][0] != "keys" || cmds[1][0] != "smoke" || captures[0] != "KEY" {
		t.Fatalf("documented commands %q (captured into %q): want KEY=$(bin/handler keys create …) then bin/handler smoke …", cmds, captures)
	}
	az := azurite.Start(t)
	tables := "GatewayTables=" + az.ConnectionString()
	s, _ := startTablesStack(t, az, "timers: { drain: 200ms, rollup: 1s }")

	vars := map[string]string{"$URL": s.URL}
	run := func(args []string) (string, error) {
		args = append([]string(nil), args...)
		for i, a := range args {
			if v, ok := vars[a]; ok {
				args[i] = v
			} else if strings.HasPrefix(a, "$") {
				t.Fatalf("documented command uses %s, which this test does not provide", a)
			}
		}
		c := exec.Command(handlerBin, args...)
		c.Dir = repoRoot() // --config infra/config/azure.yaml is relative to the checkout
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), tables}
		out, err := c.CombinedOutput()
		return string(out), err
	}

	out, err := run(cmds[0])
	if err != nil {
		t.Fatalf("%v with only %s set: %v\n%s", cmds[0], strings.SplitN(tables, "=", 2)[0], err, out)
	}
	key := strings.TrimSpace(out)
	if !strings.HasPrefix(key, "fgw-") || strings.Contains(key, "\n") {
		t.Fatalf("keys create printed %q, want just the key", out)
	}
	vars["$KEY"] = key

	out, err = run(cmds[1])
	if err != nil {
		t.Fatalf("smoke: %v\n%s", err, out)
	}
	t.Logf("smoke:\n%s", out)
	for _, check := range []string{"models", "chat", "stream", "async job", "usage report"} {
		if !strings.Contains(out, fmt.Sprintf("ok   %-13s", check)) {
			t.Errorf("smoke output has no passing %q line:\n%s", check, out)
		}
	}
	if !strings.Contains(out, "all 5 checks passed") {
		t.Errorf("smoke output:\n%s", out)
	}

	// The full config load, which `serve` uses, cannot run with this
	// environment: the store-only path is what makes the key possible.
	c := exec.Command(handlerBin, "serve", "--config", "infra/config/azure.yaml")
	c.Dir = repoRoot()
	c.Env = []string{"PATH=" + os.Getenv("PATH"), tables}
	if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "FOUNDRY_ENDPOINT") {
		t.Errorf("serve with only the table setting: %v\n%s\nwant a config error naming FOUNDRY_ENDPOINT", err, out)
	}
}

// TestSmokeReportsFailures: a wrong key fails every check and the exit
// status says so.
func TestSmokeReportsFailures(t *testing.T) {
	s := startStack(t, stackOptions{})
	c := exec.Command(handlerBin, "smoke", "--url", s.URL, "--key", "fgw-000000000000.wrong", "--job-timeout", "2s")
	out, err := c.CombinedOutput()
	if err == nil {
		t.Fatalf("smoke with a wrong key exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "FAIL models") || !strings.Contains(string(out), "5 of 5 checks failed") || !strings.Contains(string(out), "401") {
		t.Errorf("smoke output:\n%s\nwant every check failed with the 401", out)
	}
}
