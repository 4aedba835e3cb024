package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..", rel)
}

func TestShippedConfigsLoad(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		kind StoreKind
	}{
		{"local", "infra/config/local.yaml", nil, StoreEmbedded},
		{"azure", "infra/config/azure.yaml", map[string]string{
			"GatewayTables__tableServiceUri":                "https://acct.table.core.windows.net",
			"GatewayBlobs__blobServiceUri":                  "https://acct.blob.core.windows.net",
			"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
			"FOUNDRY_ENDPOINT":                              "https://x.openai.azure.com",
			"FOUNDRY_REGION":                                "swedencentral",
			"FOUNDRY_RESOURCE_ID":                           "/subscriptions/0/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/x",
			"FOUNDRY_METRICS_ENDPOINT":                      "https://swedencentral.metrics.monitor.azure.com",
		}, StoreAzureTables},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadFile(repoFile(t, tt.file), envMap(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Store.Kind != tt.kind {
				t.Errorf("store kind %q, want %q", c.Store.Kind, tt.kind)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`
backends: [{name: b, url: "http://127.0.0.1:1/", provisioned: true, auth: {none: true}}, {name: s, url: "http://h", auth: {none: true}}]
models: {m: {targets: [{backend: b}, {backend: s, weight: 3}]}}
`), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"maxBody", c.MaxBodyBytes, int64(16 << 20)},
		{"bodyReadTimeout", c.BodyReadTimeout.D(), 30 * time.Second},
		{"maxHeaderBytes", c.MaxHeaderBytes, 64 << 10},
		{"store", c.Store.Kind, StoreEmbedded},
		{"queue", c.Queue.Kind, QueueEmbedded},
		{"queue name", c.Queue.Name, "lowpri"},
		{"url trimmed", c.Backends[0].URL, "http://127.0.0.1:1"},
		{"deployment = alias", c.Models["m"].Targets[0].Deployment, "m"},
		{"provisioned priority", c.Models["m"].Targets[0].Priority, 1},
		{"standard priority", c.Models["m"].Targets[1].Priority, 2},
		{"weight default", c.Models["m"].Targets[0].Weight, 1},
		{"weight kept", c.Models["m"].Targets[1].Weight, 3},
		{"key cache", c.Auth.KeyCacheTTL.D(), 30 * time.Second},
		{"attempts", c.Proxy.MaxAttempts, 3},
	}
	for _, ck := range checks {
		if fmt.Sprint(ck.got) != fmt.Sprint(ck.want) {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestFunctionsPortWins(t *testing.T) {
	c, err := Parse([]byte(`
listen: 0.0.0.0:9999
backends: [{name: b, url: "http://h", auth: {none: true}}]
models: {m: {targets: [{backend: b}]}}
`), envMap(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "41234"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:41234" || !c.UnderFunctions {
		t.Errorf("got %q under=%v, want 127.0.0.1:41234 under=true", c.Listen, c.UnderFunctions)
	}
}

func TestInvalid(t *testing.T) {
	base := `backends: [{name: b, url: "http://h", auth: {none: true}}]` + "\n"
	tests := []struct {
		name, yaml, wantErr string
		env                 map[string]string
	}{
		{"unknown field", base + "models: {m: {targets: [{backend: b}]}}\nbogus: 1", "bogus", nil},
		{"no models", base, "at least one model", nil},
		{"unknown backend", base + "models: {m: {targets: [{backend: x}]}}", `unknown backend "x"`, nil},
		{"bad url", `backends: [{name: b, url: "h", auth: {none: true}}]` + "\nmodels: {m: {targets: [{backend: b}]}}", "absolute http(s) URL", nil},
		{"two auths", `backends: [{name: b, url: "http://h", auth: {none: true, managedIdentity: true}}]` + "\nmodels: {m: {targets: [{backend: b}]}}", "exactly one of", nil},
		{"missing key env", `backends: [{name: b, url: "http://h", auth: {apiKeyEnv: K}}]` + "\nmodels: {m: {targets: [{backend: b}]}}", "K (apiKeyEnv) is empty", nil},
		{"missing ${}", `backends: [{name: b, url: "${EP}", auth: {none: true}}]` + "\nmodels: {m: {targets: [{backend: b}]}}", "not set: EP", nil},
		{"tables without settings", base + "store: {kind: azure-tables}\nmodels: {m: {targets: [{backend: b}]}}", "GatewayTables__tableServiceUri", nil},
		{"servicebus without settings", base + "queue: {kind: servicebus}\nmodels: {m: {targets: [{backend: b}]}}", "ServiceBusConnection__fullyQualifiedNamespace", nil},
		{"bad store kind", base + "store: {kind: cosmos}\nmodels: {m: {targets: [{backend: b}]}}", `store.kind "cosmos"`, nil},
		{"alias with slash", base + "models: {a/b: {targets: [{backend: b}]}}", "must not contain", nil},
		{"model policy overCap without a cap", base + "models: {m: {targets: [{backend: b}], policy: {overCap: reject}}}", `model "m" policy`, nil},
		{"model policy negative n", base + "models: {m: {targets: [{backend: b}], policy: {maxN: -1}}}", "maxN must not be negative", nil},
		{"currency typo", base + "models: {m: {targets: [{backend: b}], price: {input: 1, output: 1, currency: EURO}}}", `price currency "EURO" is not an ISO 4217 code`, nil},
		{"currency lower case", base + "models: {m: {targets: [{backend: b}], price: {input: 1, output: 1, currency: usd}}}", `price currency "usd"`, nil},
		{"target currency typo", base + "models: {m: {targets: [{backend: b, price: {input: 1, currency: USS}}]}}", `model "m" target 0: price currency "USS"`, nil},
		{"two currencies in one model", base + "models: {m: {targets: [{backend: b, price: {input: 1, currency: EUR}}], price: {input: 1, currency: USD}}}",
			`model "m": prices in EUR and USD; every deployment of a model must use one currency`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), envMap(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSecretsRedacted(t *testing.T) {
	const key = "sk-very-secret-value"
	c, err := Parse([]byte(`
store: {kind: azure-tables}
backends: [{name: b, url: "http://h", auth: {apiKeyEnv: K}}]
models: {m: {targets: [{backend: b}]}}
`), envMap(map[string]string{"K": key, "GatewayTables": "AccountKey=" + key}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backends[0].Auth.APIKey.Reveal() != key {
		t.Fatal("key not resolved")
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "config", c, "key", c.Backends[0].Auth.APIKey)
	out := buf.String() + fmt.Sprintf("%v %+v %#v", c, c, c)
	if strings.Contains(out, key) {
		t.Errorf("secret leaked: %s", out)
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		flag string
		env  map[string]string
		want string
	}{
		{"", nil, "gateway.yaml"},
		{"x.yaml", nil, "x.yaml"},
		{"", map[string]string{"GATEWAY_CONFIG": "c.yaml"}, "c.yaml"},
		{"", map[string]string{"FUNCTIONS_APP_ROOT_PATH": "/home/site/wwwroot"}, "/home/site/wwwroot/gateway.yaml"},
		{"/abs.yaml", map[string]string{"FUNCTIONS_APP_ROOT_PATH": "/r"}, "/abs.yaml"},
	}
	for _, tt := range tests {
		if got := Path(tt.flag, envMap(tt.env)); got != tt.want {
			t.Errorf("Path(%q, %v) = %q, want %q", tt.flag, tt.env, got, tt.want)
		}
	}
}

// TestReadmeConfigExample keeps the configuration reference
// (docs/configuration.md) true: its YAML example must load.
func TestReadmeConfigExample(t *testing.T) {
	b, err := os.ReadFile(repoFile(t, "docs/configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "# Configuration")
	if i < 0 {
		t.Fatal("docs/configuration.md has no Configuration heading")
	}
	start := strings.Index(s[i:], "```yaml\n")
	if start < 0 {
		t.Fatal("no yaml block in the Configuration section")
	}
	body := s[i+start+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	c, err := Parse([]byte(body), envMap(map[string]string{"SWC_KEY": "k", "CALLBACK_KEY": "c"}))
	if err != nil {
		t.Fatalf("docs/configuration.md config example: %v", err)
	}
	if len(c.Backends) < 2 || c.Limits.Teams["research"].TPM == 0 || c.Jobs.CallbackSecret == "" {
		t.Errorf("example parsed but lost fields: %+v", c)
	}
}
