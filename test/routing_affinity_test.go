package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

// TestRoutingResponsesAffinityAcrossInstances: two simulators are two
// backends (only the one that made a response knows its id), two gateway
// instances share one Azure Tables store on Azurite. A conversation started
// on instance one continues through instance two on the right backend,
// whatever backend the canary hashing would otherwise pick.
func TestRoutingResponsesAffinityAcrossInstances(t *testing.T) {
	az := azurite.Start(t)
	dir := t.TempDir()
	env := []string{"GatewayTables=" + az.ConnectionString()}
	simCfg := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(simCfg, []byte(fastSim), 0o600); err != nil {
		t.Fatal(err)
	}
	var sims [2]string
	for i := range sims {
		sims[i] = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		p := start(t, dir, nil, "sim", "--listen", strings.TrimPrefix(sims[i], "http://"), "--config", simCfg)
		waitHTTP(t, p, sims[i]+"/sim/usage")
	}
	var gws [2]string
	var cfgPath string
	for i := range gws {
		port := freePort(t)
		gws[i] = fmt.Sprintf("http://127.0.0.1:%d", port)
		cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
store: { kind: azure-tables, connection: GatewayTables }
queue: { kind: embedded, path: %s }
ledger: { spoolPath: %s }
proxy: { exposeBackend: true, responseHeaderTimeout: 2s }
backends:
  - { name: sim-a, url: "%s", auth: { none: true } }
  - { name: sim-b, url: "%s", auth: { none: true } }
models:
  conv:
    targets:
      - { backend: sim-a, deployment: gpt-4o-mini }
      - { backend: sim-b, deployment: gpt-4o-mini }
`, port, filepath.Join(dir, fmt.Sprintf("gw%d.queue", i)), filepath.Join(dir, fmt.Sprintf("gw%d.spool", i)), sims[0], sims[1])
		cfgPath = filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i))
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kc := exec.Command(handlerBin, "keys", "create", "--config", cfgPath, "--team", "t", "--app", "a", "--secret-only")
	kc.Env = append(os.Environ(), env...)
	out, err := kc.CombinedOutput()
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, out)
	}
	key := strings.TrimSpace(string(out))
	for i := range gws {
		p := start(t, dir, append([]string{"GATEWAY_CONFIG=" + filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i))}, env...), "serve")
		waitHTTP(t, p, gws[i]+"/healthz")
	}

	respond := func(base, body, caller string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/openai/v1/responses", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-gateway-affinity-key", caller)
		resp, err := (&http.Client{}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(b, &r)
		if resp.StatusCode != 200 {
			return resp.StatusCode, resp.Header.Get("X-Gateway-Backend"), string(b)
		}
		return resp.StatusCode, resp.Header.Get("X-Gateway-Backend"), r.ID
	}
	st, origin, id := respond(gws[0], `{"model":"conv","input":"hello","max_output_tokens":16}`, "first")
	if st != 200 || id == "" {
		t.Fatalf("create: got %d %s", st, id)
	}

	// The write is asynchronous: wait until it is in the shared table.
	ts, err := tables.NewFromConnectionString(az.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ts.Table(context.Background(), "ResponseAffinity")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := tb.Query(context.Background(), store.Query{AllPartitions: true})
		if err == nil && len(rows) == 1 && rows[0].RowKey == id && rows[0].Props["Backend"] == origin {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("affinity row for %s → %s not written: %v %v", id, origin, rows, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Continue through both instances with many callers; without affinity
	// about half would hash to the other simulator and get a 400.
	for i := range 20 {
		gw := gws[1-i%2]
		body := fmt.Sprintf(`{"model":"conv","input":"more","max_output_tokens":16,"previous_response_id":%q}`, id)
		st, b, msg := respond(gw, body, fmt.Sprintf("caller-%d", i))
		if st != 200 || b != origin {
			t.Fatalf("continue %d via instance %d: got %d from %q (%s), want 200 from %s", i, 2-i%2, st, b, msg, origin)
		}
	}

	// Control: the other simulator really does not know the id.
	other := sims[0]
	if origin == "sim-a" {
		other = sims[1]
	}
	resp, err := (&http.Client{}).Post(other+"/openai/v1/responses", "application/json",
		strings.NewReader(fmt.Sprintf(`{"model":"gpt-4o-mini","input":"x","previous_response_id":%q}`, id)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("control: the other simulator answered %d, want 400 previous_response_not_found", resp.StatusCode)
	}
}
