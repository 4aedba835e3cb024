package config

import (
	"strings"
	"testing"
)

func TestJobPolicy(t *testing.T) {
	base := `backends:
  - { name: ptu, url: "https://a.openai.azure.com", provisioned: true, auth: { none: true } }
  - { name: paygo, url: "https://b.openai.azure.com", auth: { none: true } }
models:
  m:
    targets:
      - { backend: ptu, deployment: d-ptu }
      - { backend: paygo, deployment: d }
`
	tests := []struct {
		name, jobs string
		want       []JobTarget
		wantErr    string
	}{
		{"default: provisioned only", "", []JobTarget{{"ptu", "d-ptu"}}, ""},
		{"spill adds paygo", "    jobs: { spillToPaygo: true }\n", []JobTarget{{"ptu", "d-ptu"}, {"paygo", "d"}}, ""},
		{"explicit", "    jobs: { targets: [ptu/d-ptu] }\n", []JobTarget{{"ptu", "d-ptu"}}, ""},
		{"paygo without spill", "    jobs: { targets: [paygo/d] }\n", nil, "set jobs.spillToPaygo"},
		{"unknown target", "    jobs: { targets: [ptu/nope] }\n", nil, "is not one of the alias's targets"},
		{"bad threshold", "    jobs: { threshold: 1.5 }\n", nil, "jobs.threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tt.jobs), func(string) string { return "" })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.JobTargets("m")
			if len(got) != len(tt.want) {
				t.Fatalf("targets %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("targets %v, want %v", got, tt.want)
				}
			}
			if c.Models["m"].Jobs.Threshold != 0.7 {
				t.Errorf("threshold %v, want the drainTarget default 0.7", c.Models["m"].Jobs.Threshold)
			}
		})
	}
}

func TestMetricsConfig(t *testing.T) {
	base := "backends:\n  - { name: ptu, url: \"https://a.openai.azure.com\", provisioned: true, auth: { none: true }, resourceId: %s }\nmodels:\n  m: { targets: [ { backend: ptu } ] }\njobs: { signals: { metrics: %s } }\n"
	ok := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
	for _, tt := range []struct{ name, id, metrics, wantErr string }{
		{"azure", ok, `{ endpoint: "https://swedencentral.metrics.monitor.azure.com" }`, ""},
		{"simulator", ok, `{ endpoint: "http://127.0.0.1:9000", auth: none }`, ""},
		{"http off loopback", ok, `{ endpoint: "http://metrics.example.com" }`, "http only on a loopback"},
		{"none off loopback", ok, `{ endpoint: "https://metrics.example.com", auth: none }`, "only for the simulator"},
		{"bad resource id", "/subscriptions/s/accounts/a", `{ endpoint: "https://x.metrics.monitor.azure.com" }`, "resourceId"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(strings.Replace(base, "%s", tt.id, 1), "%s", tt.metrics, 1)), func(string) string { return "" })
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}
