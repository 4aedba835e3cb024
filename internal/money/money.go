package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Nanos is an amount in billionths (1e-9) of a currency unit.
//
// Why not micro-units: prices are quoted per million tokens with up to three
// decimals (0.075 USD per 1M tokens is 0.000000075 USD per token), so one
// token costs a whole number of nanos at any such price and a call's cost is
// exact, with no rounding. An int64 holds ±9.2 billion units.
type Nanos int64

// PerUnit is the number of Nanos in one currency unit.
const PerUnit = 1_000_000_000

// Decimals is the fixed number of decimals every output shows (CSV, JSON,
// the CLI, the API, the usage page): micro-units. Sums are taken in Nanos
// and rounded (half away from zero) only when printed.
const Decimals = 6

// FromFloat converts a decimal amount held in a float64 (a configured
// price) to Nanos, rounded to the nearest nano; the float's own noise (0.1
// is 0.1000000000000000055…) is far below a nano and disappears.
func FromFloat(f float64) Nanos { return Nanos(math.Round(f * PerUnit)) }

// Float is n as a float64, for telemetry and the legacy Cost column.
func (n Nanos) Float() float64 { return float64(n) / PerUnit }

// ErrSyntax: text that is not a decimal amount.
var ErrSyntax = errors.New("money: not a decimal amount")

// Parse reads a decimal amount ("12", "-0.0017079", "1.5e-3" is refused)
// exactly; digits past the ninth decimal are rounded half away from zero.
func Parse(s string) (Nanos, error) {
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "-"), "+")
	ip, fp, _ := strings.Cut(t, ".")
	if ip == "" && fp == "" || strings.Trim(ip+fp, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	if ip == "" {
		ip = "0"
	}
	whole, err := strconv.ParseInt(ip, 10, 64)
	if err != nil || whole > math.MaxInt64/PerUnit-1 {
		return 0, fmt.Errorf("%w: %q out of range", ErrSyntax, s)
	}
	round := len(fp) > 9 && fp[9] >= '5'
	if len(fp) > 9 {
		fp = fp[:9]
	}
	fp += strings.Repeat("0", 9-len(fp))
	frac, _ := strconv.ParseInt(fp, 10, 64)
	n := whole*PerUnit + frac
	if round {
		n++
	}
	if neg {
		n = -n
	}
	return Nanos(n), nil
}

// Text is n with exactly decimals decimals (0 to 9), rounded half away
// from zero: "0.001708" for 1707900 nanos at 6.
func (n Nanos) Text(decimals int) string {
	decimals = min(max(decimals, 0), 9)
	v := int64(n)
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	div := uint64(1)
	for i := 0; i < 9-decimals; i++ {
		div *= 10
	}
	q := u / div
	if u%div*2 >= div && div > 1 {
		q++
	}
	scale := uint64(1)
	for i := 0; i < decimals; i++ {
		scale *= 10
	}
	s := strconv.FormatUint(q/scale, 10)
	if decimals > 0 {
		f := strconv.FormatUint(q%scale, 10)
		s += "." + strings.Repeat("0", decimals-len(f)) + f
	}
	if neg && q != 0 {
		s = "-" + s
	}
	return s
}

// String is n at the fixed output precision (Decimals).
func (n Nanos) String() string { return n.Text(Decimals) }

// MarshalJSON writes n as a JSON number with Decimals decimals, exactly as
// String: 0.001708, never 0.0017079000000000003.
func (n Nanos) MarshalJSON() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalJSON reads a JSON number (or a string holding one) exactly.
func (n *Nanos) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" {
		return nil
	}
	v, err := Parse(s)
	if err != nil {
		// An exponent ("1e-05", a float64 from an older writer): go through
		// float64, which is exact enough for such values.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return err
		}
		v = FromFloat(f)
	}
	*n = v
	return nil
}

// PerMillion is the cost of tokens at price per million tokens, rounded to
// the nearest nano (half up); exact for prices with at most three decimals.
// Negative token counts cost nothing.
func PerMillion(tokens int64, price Nanos) Nanos {
	if tokens <= 0 || price == 0 {
		return 0
	}
	neg := price < 0
	p := uint64(price)
	if neg {
		p = uint64(-price)
	}
	hi, lo := bits.Mul64(uint64(tokens), p)
	if hi >= 1_000_000 { // would overflow the quotient; saturate
		return Nanos(math.MaxInt64)
	}
	q, r := bits.Div64(hi, lo, 1_000_000)
	if r*2 >= 1_000_000 {
		q++
	}
	if q > math.MaxInt64 {
		q = math.MaxInt64
	}
	if neg {
		return -Nanos(q)
	}
	return Nanos(q)
}

// Scale is n × ppm / 1,000,000, rounded half away from zero: a discount of
// 25% is Scale(n, 750_000).
func Scale(n Nanos, ppm int64) Nanos {
	neg := (n < 0) != (ppm < 0)
	a, b := uint64(n), uint64(ppm)
	if n < 0 {
		a = uint64(-n)
	}
	if ppm < 0 {
		b = uint64(-ppm)
	}
	hi, lo := bits.Mul64(a, b)
	if hi >= 1_000_000 {
		return Nanos(math.MaxInt64)
	}
	q, r := bits.Div64(hi, lo, 1_000_000)
	if r*2 >= 1_000_000 {
		q++
	}
	if neg {
		return -Nanos(q)
	}
	return Nanos(q)
}
