package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/config"
)

// TestLocalSettingsSample: local.settings.sample.json, copied as
// local.settings.json by `make funcapp` for `func start`, sets exactly what
// the gateway (config.Path, config.LoadFile) and the Functions host read:
// GATEWAY_CONFIG names a config in the repo (at the same path under the
// funcapp root), the gateway loads it with the sample's values alone, and
// no value is a name that nothing reads.
func TestLocalSettingsSample(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "local.settings.sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ls struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
		Host        struct {
			LocalHTTPPort int `json:"LocalHttpPort"`
		} `json:"Host"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&ls); err != nil {
		t.Fatal(err)
	}
	if ls.IsEncrypted || ls.Host.LocalHTTPPort == 0 {
		t.Errorf("IsEncrypted %v, Host.LocalHttpPort %d: Core Tools needs plain values and a port", ls.IsEncrypted, ls.Host.LocalHTTPPort)
	}
	if !strings.EqualFold(ls.Values["FUNCTIONS_WORKER_RUNTIME"], "custom") {
		t.Errorf("FUNCTIONS_WORKER_RUNTIME %q, want custom", ls.Values["FUNCTIONS_WORKER_RUNTIME"])
	}
	if ls.Values["AzureWebJobsStorage"] != "UseDevelopmentStorage=true" {
		t.Errorf("AzureWebJobsStorage %q, want UseDevelopmentStorage=true (Azurite, for the host's timer locks)", ls.Values["AzureWebJobsStorage"])
	}
	// Resolve the config path as serve does under the host, with the app
	// root at the repository (make funcapp copies the file to the same
	// relative path under build/funcapp).
	getenv := func(n string) string {
		if n == config.EnvAppRoot {
			return root
		}
		return ls.Values[n]
	}
	cfgPath := config.Path("", getenv)
	if ls.Values[config.EnvConfigPath] == "" || filepath.IsAbs(ls.Values[config.EnvConfigPath]) {
		t.Fatalf("GATEWAY_CONFIG %q: want a path relative to the app root", ls.Values[config.EnvConfigPath])
	}
	cfg, err := config.LoadFile(cfgPath, getenv)
	if err != nil {
		t.Fatalf("the gateway cannot start with the sample's settings: %v", err)
	}
	if cfg.Store.Kind != config.StoreAzureTables || !strings.Contains(string(cfg.Store.ConnectionString), "127.0.0.1:10002") {
		t.Errorf("store %s via %s: want Azure Tables on Azurite (127.0.0.1:10002)", cfg.Store.Kind, cfg.Store.Connection)
	}
	reads := gatewayReads(cfgPath)
	host := hostReads(t, root)
	for n := range ls.Values {
		if !reads[n] && !host(n) {
			t.Errorf("local.settings.sample.json sets %s, which neither the gateway nor the Functions host reads", n)
		}
	}
	// And the gateway needs every gateway setting the sample has.
	for n := range ls.Values {
		if !reads[n] || n == config.EnvConfigPath {
			continue
		}
		without := func(x string) string {
			if x == n {
				return ""
			}
			return getenv(x)
		}
		if _, err := config.LoadFile(cfgPath, without); err == nil {
			t.Errorf("local.settings.sample.json sets %s, but the gateway loads %s without it", n, cfgPath)
		}
	}
}
