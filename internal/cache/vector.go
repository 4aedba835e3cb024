package cache

import (
	"errors"
	"math"
	"strings"
)

// vec is an embedding quantised to int8 (each component scaled by the
// vector's largest magnitude to ±127): 1 byte per dimension in memory and
// in the table, 4× less than float32. Cosine similarity does not depend on
// the scale, so none is kept; the quantisation error on the cosine of
// unit vectors of 256+ dimensions is below 0.01.
type vec struct {
	q    []int8
	norm float32 // Euclidean norm of q
}

// errBadVector: a vector that cannot be compared (empty, zero, NaN).
var errBadVector = errors.New("cache: unusable embedding vector")

// quantise makes a vec of v.
func quantise(v []float32) (vec, error) {
	var m float64
	for _, f := range v {
		a := math.Abs(float64(f))
		if math.IsNaN(a) || math.IsInf(a, 0) {
			return vec{}, errBadVector
		}
		m = max(m, a)
	}
	if len(v) == 0 || m == 0 {
		return vec{}, errBadVector
	}
	q := make([]int8, len(v))
	for i, f := range v {
		q[i] = int8(math.Round(float64(f) / m * 127))
	}
	return fromQ(q)
}

func fromQ(q []int8) (vec, error) {
	var n int64
	for _, x := range q {
		n += int64(x) * int64(x)
	}
	if n == 0 {
		return vec{}, errBadVector
	}
	return vec{q: q, norm: float32(math.Sqrt(float64(n)))}, nil
}

// bytes is the table encoding: the int8 components as bytes.
func (v vec) bytes() []byte {
	b := make([]byte, len(v.q))
	for i, x := range v.q {
		b[i] = byte(x)
	}
	return b
}

func vecFrom(b []byte) (vec, error) {
	q := make([]int8, len(b))
	for i, x := range b {
		q[i] = int8(x)
	}
	return fromQ(q)
}

// cosine of a and b; 0 when their dimensions differ (another embedding
// model: never a match).
func cosine(a, b vec) float64 {
	if len(a.q) != len(b.q) || a.norm == 0 || b.norm == 0 {
		return 0
	}
	return float64(dot8(a.q, b.q)) / (float64(a.norm) * float64(b.norm))
}

// dot8 is the dot product of two int8 vectors of equal length, four
// products at a time into int32 sums (127² × 4 × 2¹⁶ dimensions fits).
func dot8(a, b []int8) int64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return int64(s0) + int64(s1) + int64(s2) + int64(s3)
}

// keyPart makes s safe in a Table Storage key: / \ # ? | % ' and control
// characters become %XX.
func keyPart(s string) string {
	if !strings.ContainsFunc(s, unsafeKeyRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeKeyRune(r) {
			for _, c := range []byte(string(r)) {
				b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
			}
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeKeyRune(r rune) bool {
	return strings.ContainsRune("/\\#?|%'", r) || r < 0x20 || (r >= 0x7f && r <= 0x9f)
}
