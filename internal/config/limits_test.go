package config

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsDefaults(t *testing.T) {
	var l LimitsConfig
	l.ApplyDefaults()
	tests := []struct {
		name      string
		got, want any
	}{
		{"window", l.Window.D(), 60 * time.Second},
		{"syncInterval", l.SyncInterval.D(), time.Second},
		{"monthSyncInterval", l.MonthSyncInterval.D(), 10 * time.Second},
		{"overrideTTL", l.OverrideTTL.D(), 30 * time.Second},
		{"failMode", l.FailMode, FailOpen},
		{"monthlyExceeded", l.MonthlyExceeded, 403},
		{"defaultMaxOutput", l.DefaultMaxOutput, int64(1000)},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if errs := l.Validate(); len(errs) != 0 {
		t.Errorf("Validate of the defaults = %v, want none", errs)
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*LimitsConfig)
		want string // substring of the error; "" for valid
	}{
		{"valid short window", func(l *LimitsConfig) {
			l.Window = Duration(2 * time.Second)
			l.SyncInterval = Duration(100 * time.Millisecond)
		}, ""},
		{"fractional window", func(l *LimitsConfig) { l.Window = Duration(1500 * time.Millisecond) }, "window"},
		{"sync not shorter than the window", func(l *LimitsConfig) { l.SyncInterval = Duration(time.Minute) }, "syncInterval"},
		{"bad fail mode", func(l *LimitsConfig) { l.FailMode = "maybe" }, "failMode"},
		{"bad monthly status", func(l *LimitsConfig) { l.MonthlyExceeded = 402 }, "monthlyExceeded"},
		{"negative team limit", func(l *LimitsConfig) { l.Teams = map[string]Limit{"r": {TPM: -1}} }, "teams.r"},
		{"negative default", func(l *LimitsConfig) { l.Defaults.Key.RPM = -5 }, "defaults.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l LimitsConfig
			tt.mod(&l)
			l.ApplyDefaults()
			var got []string
			for _, e := range l.Validate() {
				got = append(got, e.Error())
			}
			joined := strings.Join(got, "; ")
			if tt.want == "" && len(got) != 0 || tt.want != "" && !strings.Contains(joined, tt.want) {
				t.Errorf("Validate = %q, want an error mentioning %q", joined, tt.want)
			}
		})
	}
}

func TestLimitsParse(t *testing.T) {
	yaml := `
backends: [{name: b, url: "http://127.0.0.1:1", auth: {none: true}}]
models: {m: {targets: [{backend: b}]}}
limits:
  teams: {research: {rpm: 600, tpm: 200000, monthlyTokens: 50000000}}
  defaults: {key: {rpm: 60}}
  window: 2s
  syncInterval: 100ms
  failMode: closed
  monthlyExceeded: 429
`
	c, err := Parse([]byte(yaml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if got := l.Teams["research"]; got != (Limit{RPM: 600, TPM: 200000, MonthlyTokens: 50000000}) {
		t.Errorf("teams.research = %+v, want rpm 600 tpm 200000 monthlyTokens 50000000", got)
	}
	if l.Defaults.Key.RPM != 60 || l.Window.D() != 2*time.Second || l.SyncInterval.D() != 100*time.Millisecond ||
		l.FailMode != FailClosed || l.MonthlyExceeded != 429 || l.OverrideTTL.D() != 30*time.Second {
		t.Errorf("limits = %+v, want the file's values and defaults for the rest", l)
	}
}
