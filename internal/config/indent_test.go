package config

import (
	"os"
	"strings"
	"testing"
)

// TestParseErrorLineNumbers checks that a badly indented config is reported
// at the line that is wrong, not where its enclosing block began.
func TestParseErrorLineNumbers(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"key indented too far", "listen: 127.0.0.1:8080\nstore:\n  kind: embedded\n   path: x\nqueue:\n  kind: embedded\n", "line 4:"},
		{"key indented too little", "listen: 127.0.0.1:8080\nstore:\n  kind: embedded\n path: x\n", "line 4:"},
		{"sequence item field", "listen: 127.0.0.1:8080\nbackends:\n  - name: a\n    url: http://x\n   region: r\nmodels: {}\n", "line 5:"},
		{"tab", "listen: 127.0.0.1:8080\nstore:\n  kind: embedded\n\tpath: x\n", "line 4:"},
		{"unknown field keeps the parser's line", "listen: 127.0.0.1:8080\nstore:\n  kind: embedded\n  bogus: x\n", "line 4: field bogus not found"},
		{"bad duration keeps its line", "listen: 127.0.0.1:8080\nproxy:\n  tryDuration: 5 minutes\n", "line 3:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestBadIndentAcceptsValidConfigs keeps badIndent from blaming a line of a
// valid file: every shipped config and the documented example pass.
func TestBadIndentAcceptsValidConfigs(t *testing.T) {
	files := []string{"infra/config/local.yaml", "infra/config/azure.yaml", "docs/configuration.md"}
	for _, f := range files {
		b, err := os.ReadFile(repoFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.HasSuffix(f, ".md") {
			s = s[strings.Index(s, "```yaml\n")+len("```yaml\n"):]
			s = s[:strings.Index(s, "```")]
		}
		if n, why := badIndent([]byte(s)); n != 0 {
			t.Errorf("%s: line %d: %s", f, n, why)
		}
	}
	block := "a: |\n  text\n    more\n  end\nb:\n- x\n- y: 1\n  z: 2\nc: [1,\n      2]\n"
	if n, why := badIndent([]byte(block)); n != 0 {
		t.Errorf("block scalar / sequences / flow: line %d: %s", n, why)
	}
}
