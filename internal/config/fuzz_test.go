package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/foundry-gateway/gateway/internal/callback"
)

// FuzzParse checks the config loader on any input (issue #16 item 9): it
// never panics, and what it accepts is valid, has its defaults applied,
// and has an allow-list the callback policy can use.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"local.yaml", "azure.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "infra", "config", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("listen: 127.0.0.1:9\njobs: { callbackAllow: [10.0.0.0/8, hooks.internal], callbackAllowHTTP: true }\nbackends: [{ name: b, url: \"https://x.openai.azure.com\", auth: { none: true } }]\nmodels: { m: { targets: [{ backend: b, deployment: d }] } }\n"))
	f.Add([]byte(`{"listen":"127.0.0.1:9","maxHeaderBytes":8192,"bodyReadTimeout":"5s"}`))
	getenv := func(name string) string {
		if name == "FUNCTIONS_CUSTOMHANDLER_PORT" {
			return ""
		}
		return "value-of-" + name
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, getenv)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate refuses: %v", err)
		}
		if c.Listen == "" || c.MaxBodyBytes < 1024 || c.MaxHeaderBytes < 4096 || c.BodyReadTimeout.D() <= 0 {
			t.Fatalf("defaults not applied: %+v", c)
		}
		if err := (callback.Policy{Allow: c.Jobs.CallbackAllow}).Validate(); err != nil {
			t.Fatalf("accepted jobs.callbackAllow the callback policy refuses: %v", err)
		}
	})
}
