package tokens

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/dlclark/regexp2"
	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"
)

// The oracle is tiktoken-go, which the product used before: a test-only
// dependency now. Its split patterns are those of tiktoken's encodings.
var (
	oraclePatterns = map[string]string{
		CL100K: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
		O200K: strings.Join([]string{
			`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
			`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
			`\p{N}{1,3}`,
			` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
			`\s*[\r\n]+`,
			`\s+(?!\S)`,
			`\s+`,
		}, "|"),
	}
	oracleOnce sync.Once
	oracleTK   map[string]*tiktoken.Tiktoken
	oracleRE   map[string]*regexp2.Regexp
	ourTables  map[string]*table
)

func oracle(t testing.TB) {
	t.Helper()
	oracleOnce.Do(func() {
		tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader())
		oracleTK, oracleRE, ourTables = map[string]*tiktoken.Tiktoken{}, map[string]*regexp2.Regexp{}, map[string]*table{}
		for _, name := range []string{CL100K, O200K} {
			tk, err := tiktoken.GetEncoding(name)
			if err != nil {
				panic(err)
			}
			oracleTK[name] = tk
			oracleRE[name] = regexp2.MustCompile(oraclePatterns[name], regexp2.None)
			tb, err := loadTable(name)
			if err != nil {
				panic(err)
			}
			ourTables[name] = tb
		}
	})
}

// oracleSplit returns the pieces regexp2 finds, as tiktoken-go cuts them.
func oracleSplit(re *regexp2.Regexp, s string) []string {
	runes := []rune(s)
	var out []string
	m, _ := re.FindStringMatch(s)
	for m != nil {
		out = append(out, string(runes[m.Index:m.Index+m.Length]))
		m, _ = re.FindNextMatch(m)
	}
	return out
}

func ourSplit(tb *table, s string) []string {
	s = validUTF8(s)
	var out []string
	for i := 0; i < len(s); {
		e := tb.split(s, i)
		out = append(out, s[i:e])
		i = e
	}
	return out
}

// compare checks our pieces and count against the oracle's for s.
func compare(t testing.TB, s string) {
	t.Helper()
	for _, name := range []string{CL100K, O200K} {
		want, got := oracleSplit(oracleRE[name], s), ourSplit(ourTables[name], s)
		if strings.Join(want, "\x00|") != strings.Join(got, "\x00|") {
			t.Fatalf("%s split of %q:\n got %q\nwant %q", name, s, got, want)
		}
		if w, g := len(oracleTK[name].EncodeOrdinary(s)), ourTables[name].count(validUTF8(s)); w != g {
			t.Fatalf("%s count of %q = %d, want %d", name, s, g, w)
		}
	}
}

var corpus = []string{
	"",
	"hello world",
	"The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! McDonald's iPhone XMLHttpRequest camelCaseWord",
	"I'm sure you'll see they've done it; she'd say it's John's, we're OK. I'M SURE YOU'LL SEE THEY'VE DONE IT. 'tis 'Re 'LL '",
	"func main() {\n\tfmt.Println(\"hello\")\n\tfor i := 0; i < 10; i++ {\n\t\tx += i * 2 // comment\n\t}\n}\n",
	"def f(x):\r\n    return [y**2 for y in range(x) if y % 3 == 0]  \r\n\r\n\n   \n",
	`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.7,"max_tokens":1024,"stream":true}`,
	"https://example.com/path/to/page?query=1&x=y#frag /usr/local/bin // /* */ <a href=\"/x/\">",
	"日本語のテキストです。東京は晴れ。中文文本，包含标点符号！한국어 텍스트입니다.",
	"emoji 😀😃😄 👩‍👩‍👧‍👦 🇸🇪 ✨🔥 👍🏽 text",
	"numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 ²³ ⅓ Ⅻ ١٢٣٤ ๑๒๓",
	"   leading and trailing spaces   ",
	"tabs\t\there\t\n\n\n\nnewlines\r\n\r\nand\u00a0nbsp\u2003em\u3000ideographic\u2028line\u0085nel",
	"MiXeD CaSe WoRdS ǅungla ǈ ʰʲ ÀÉÎÕÜ àéîõü Straße ΣΊΣΥΦΟΣ σοφός",
	"combining: e\u0301 a\u0300\u0302 \u0301\u0301 x\u20dd !\u0301? ि क्षि नमस्ते",
	"Arabic: مرحبا بالعالم Hebrew: שלום עולם Thai: สวัสดีครับ",
	"base64: SGVsbG8gV29ybGQhIFRoaXMgaXMgYSB0ZXN0Lg== hex: 0xDEADBEEF deadbeef",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"!!!!!!!!???......-----=====>>>>> ... ;;; ''' \"\"\" ``` ~~~ ___",
	"invalid \xff\xfe bytes \xc3 and \xe2\x82 cut",
	"Kelvin \u212a 'S 'ſ İstanbul ı",
	"line1\nline2\r\nline3\rline4 \n \n\t\n",
	"/**\n * Doc comment.\n */\npath//to///x\n///\n!/\n/",
	// Long pieces (the heap merge): the load-test body's run of x, base64,
	// hex, a long identifier, long space and punctuation runs.
	" " + strings.Repeat("x", 91),
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQSflKxwRJSMeKKF2QT4fwpMeJf36POk6yJVadQssw5c",
	"0123456789abcdef0123456789abcdefdeadbeefcafebabe",
	"supercalifragilisticexpialidociousAntidisestablishmentarianismPneumonoultramicroscopicsilicovolcanoconiosis",
	strings.Repeat(" ", 100) + "x" + strings.Repeat("\t", 40) + strings.Repeat("=", 77) + strings.Repeat("ab", 60),
}

func TestCountMatchesTiktoken(t *testing.T) {
	oracle(t)
	for _, s := range corpus {
		compare(t, s)
	}
	// The chat body of the benchmarks, and the corpus joined.
	compare(t, strings.Repeat("The quick brown fox jumps over the lazy dog. ", 45))
	compare(t, strings.Join(corpus, " "))
}

// tricky holds runes of every class the patterns tell apart.
var tricky = []string{
	"a", "b", "s", "S", "t", "e", "E", "r", "l", "L", "v", "m", "d", "D", "A", "Z", "'", "'", "’",
	"0", "7", "²", "Ⅻ", "١", " ", " ", " ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2028", "\u0085", "\u3000", "\v", "\f",
	"/", "//", ".", ",", "!", "?", "-", "_", "(", ")", "{", "}", "\"", "#", "$", "😀", "‍", "🏽",
	"中", "の", "ʰ", "ǅ", "ß", "Σ", "σ", "É", "é", "\u0301", "\u0300", "\u20dd", "ि", "क", "\u212a", "ſ", "İ", "ı",
	"\xff", "\xc3", "hello", "World", "THE", "'ll", "'VE", "'Re", "123456",
}

func TestCountMatchesTiktokenRandom(t *testing.T) {
	oracle(t)
	rng := rand.New(rand.NewPCG(17, 4))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		var b strings.Builder
		for k := rng.IntN(24); k >= 0; k-- {
			if rng.IntN(40) == 0 { // now and then a long piece
				b.WriteString(strings.Repeat(tricky[rng.IntN(len(tricky))], 10+rng.IntN(30)))
			}
			b.WriteString(tricky[rng.IntN(len(tricky))])
		}
		compare(t, b.String())
	}
}

func FuzzCountMatchesTiktoken(f *testing.F) {
	for _, s := range corpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		oracle(t)
		compare(t, s)
	})
}

// TestClasses checks the class bits against the unicode tables regexp2
// uses (unicode.Categories, unicode.IsSpace) for every rune.
func TestClasses(t *testing.T) {
	cat := unicode.Categories
	in := func(r rune, names ...string) bool {
		for _, n := range names {
			if unicode.Is(cat[n], r) {
				return true
			}
		}
		return false
	}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		var want uint8
		if in(r, "L") {
			want |= cL
		}
		if in(r, "N") {
			want |= cN
		}
		if unicode.IsSpace(r) {
			want |= cS
		}
		if in(r, "Lu", "Lt", "Lm", "Lo", "M") {
			want |= cU
		}
		if in(r, "Ll", "Lm", "Lo", "M") {
			want |= cW
		}
		if r == '\r' || r == '\n' {
			want |= cNL
		}
		got := slowClass(r)
		if r < 0x80 {
			got = asciiClass[r]
		}
		if got != want {
			t.Fatalf("class(%U) = %06b, want %06b", r, got, want)
		}
	}
}
