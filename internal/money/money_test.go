package money

import (
	"encoding/json"
	"testing"
)

func TestText(t *testing.T) {
	tests := []struct {
		n    Nanos
		dec  int
		want string
	}{
		{0, 6, "0.000000"},
		{1707900, 6, "0.001708"},
		{1707499, 6, "0.001707"},
		{1707500, 6, "0.001708"},
		{-1707500, 6, "-0.001708"},
		{-400, 6, "0.000000"},
		{12_345_678_901, 6, "12.345679"},
		{12_345_678_901, 9, "12.345678901"},
		{12_345_678_901, 0, "12"},
		{PerUnit, 2, "1.00"},
	}
	for _, tt := range tests {
		if got := tt.n.Text(tt.dec); got != tt.want {
			t.Errorf("%d.Text(%d) = %q, want %q", tt.n, tt.dec, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Nanos
		err  bool
	}{
		{"0.0017079000000000003", 1707900, false},
		{"12", 12 * PerUnit, false},
		{"-0.5", -PerUnit / 2, false},
		{".25", PerUnit / 4, false},
		{"0.0000000015", 2, false},
		{"1e-3", 0, true},
		{"", 0, true},
		{"abc", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestJSON(t *testing.T) {
	b, _ := json.Marshal(struct{ C Nanos }{1707900})
	if string(b) != `{"C":0.001708}` {
		t.Errorf("got %s", b)
	}
	var v struct{ C Nanos }
	for in, want := range map[string]Nanos{`{"C":0.0017079000000000003}`: 1707900, `{"C":1e-05}`: 10000, `{"C":"0.5"}`: PerUnit / 2} {
		if err := json.Unmarshal([]byte(in), &v); err != nil || v.C != want {
			t.Errorf("%s: got %d %v, want %d", in, v.C, err, want)
		}
	}
}

func TestPerMillion(t *testing.T) {
	tests := []struct {
		tokens int64
		price  Nanos
		want   Nanos
	}{
		{1000, FromFloat(0.15), 150_000}, // 0.00015
		{1, FromFloat(0.075), 75},        // exact: three decimals per 1M
		{333, FromFloat(0.0001), 33},     // 0.0333 nanos rounds to 0
		{3, FromFloat(2.5), 7_500},       // 3 × 2500 nanos
		{-5, FromFloat(2.5), 0},          // nothing for negative counts
		{1_000_000, FromFloat(10), 10 * PerUnit},
	}
	for _, tt := range tests {
		if got := PerMillion(tt.tokens, tt.price); got != tt.want {
			t.Errorf("PerMillion(%d, %d) = %d, want %d", tt.tokens, tt.price, got, tt.want)
		}
	}
	if got := Scale(1001, 500_000); got != 501 {
		t.Errorf("Scale = %d, want 501", got)
	}
}

func TestValidCurrency(t *testing.T) {
	for code, want := range map[string]bool{"USD": true, "EUR": true, "JPY": true, "usd": false, "EURO": false, "XXX": false, "USS": false, "": false} {
		if got := ValidCurrency(code); got != want {
			t.Errorf("ValidCurrency(%q) = %v, want %v", code, got, want)
		}
	}
}
