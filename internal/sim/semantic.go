package sim

import (
	"math"
	"strings"
	"unicode"
)

// Text embeddings that behave like a model's for the semantic cache
// (issue #20): a deterministic bag of words. The text is lower-cased and
// split into words; stop words and question/filler words are dropped,
// common synonyms folded to one word and suffixes stemmed; each remaining
// word adds its own pseudo-random direction (a hash of the model, the word
// and the dimension, so a shorter `dimensions` stays a prefix). So a
// paraphrase that keeps the content words lands close (cosine near 1),
// and an unrelated prompt, sharing none, lands near orthogonal. A text
// with no content word falls back to a hash of the whole text.

// stopWords carry no topic: function words and the filler of a request
// ("please tell me ...").
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if of to in on at by for with from into onto about as is are was
		were be been being am do does did doing have has had having i me my mine we us our you your yours he him his she
		her it its they them their this that these those there here what which who whom whose when where why how can could
		would should will shall may might must please tell give show explain describe let know want need like just also
		some any all each every so very really quite much many more most briefly short quick simple simply kindly
		s t im i'm what's whats is it's its hi hello hey thanks thank not no yes one`) {
		m[w] = true
	}
	return m
}()

// synonyms fold words a model would place together onto one.
var synonyms = map[string]string{
	"big": "large", "huge": "large", "largest": "large", "biggest": "large", "small": "little", "tiny": "little",
	"smallest": "little", "city": "capital", "fast": "quick", "quickly": "quick", "rapid": "quick", "speedy": "quick",
	"automobile": "car", "vehicle": "car", "cars": "car", "purchase": "buy", "buying": "buy", "bought": "buy",
	"begin": "start", "commence": "start", "starting": "start", "end": "finish", "stop": "finish", "halt": "finish",
	"error": "mistake", "bug": "mistake", "fault": "mistake", "physician": "doctor", "medic": "doctor",
	"kid": "child", "kids": "child", "children": "child", "reset": "change", "modify": "change", "alter": "change",
	"login": "password", "passcode": "password", "film": "movie", "movies": "movie", "films": "movie",
	"picture": "image", "photo": "image", "photograph": "image", "mend": "fix", "repair": "fix", "resolve": "fix",
	"author": "write", "wrote": "write", "written": "write", "writer": "write", "ocean": "sea", "oceans": "sea",
	"earth": "planet", "world": "planet", "recipe": "cook", "cooking": "cook", "bake": "cook", "cost": "price",
	"expense": "price", "cheap": "inexpensive", "sum": "add", "total": "add", "compute": "calculate",
	"mean": "meaning", "means": "meaning", "define": "meaning", "definition": "meaning", "translate": "translation",
	"summarize": "summary", "summarise": "summary", "summarization": "summary", "story": "tale", "happy": "glad",
	"sad": "unhappy", "help": "assist", "assistance": "assist", "sick": "ill", "illness": "ill", "disease": "ill",
	"weather": "forecast", "tomorrow": "forecast", "distance": "far", "away": "far", "located": "location",
	"situated": "location", "where's": "location", "invent": "invention", "invented": "invention", "inventor": "invention",
	"created": "invention", "spoken": "speak", "discoverer": "discovery", "discover": "discovery", "discovered": "discovery", "tall": "height", "high": "height",
	"population": "people", "inhabitants": "people", "residents": "people", "live": "people", "lives": "people",
}

// contentWords are the stemmed, folded content words of s.
func contentWords(s string) []string {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
	out := words[:0]
	for _, w := range words {
		w = strings.Trim(w, "'")
		if stopWords[w] || w == "" {
			continue
		}
		if s, ok := synonyms[w]; ok {
			w = s
		}
		w = stem(w)
		if s, ok := synonyms[w]; ok {
			w = s
		}
		if w != "" && !stopWords[w] {
			out = append(out, w)
		}
	}
	return out
}

// stem strips common English suffixes (a light Porter step 1) and a
// final e, so that inflections of a word meet (vaccines/vaccine,
// generated/generate).
func stem(w string) string {
	if len(w) <= 3 {
		return w
	}
	for _, suf := range []struct{ s, r string }{{"ies", "y"}, {"ied", "y"}, {"sses", "ss"}, {"ches", "ch"}, {"shes", "sh"},
		{"xes", "x"}, {"ational", "ate"}, {"ization", "ize"}, {"ation", "ate"}, {"ness", ""}, {"ment", ""}, {"ing", ""},
		{"edly", ""}, {"ed", ""}, {"ly", ""}, {"ss", "ss"}, {"us", "us"}, {"is", "is"}, {"s", ""}} {
		if strings.HasSuffix(w, suf.s) && len(w)-len(suf.s) >= 3 {
			w = w[:len(w)-len(suf.s)] + suf.r
			break
		}
	}
	// a doubled final consonant left by -ing/-ed (running → run)
	if n := len(w); n >= 4 && w[n-1] == w[n-2] && !strings.ContainsRune("aeiouls", rune(w[n-1])) {
		w = w[:n-1]
	}
	if n := len(w); n > 4 && w[n-1] == 'e' {
		w = w[:n-1]
	}
	return w
}

// textVector is the embedding of a text input: its bag of content words,
// or, with none, the hash vector of the whole text.
func textVector(model, text string, dims int) []float32 {
	words := contentWords(text)
	if len(words) == 0 {
		h := newHasher()
		h.add(model)
		h.add(text)
		return vector(h.sum(), dims)
	}
	counts := map[string]float64{}
	for _, w := range words {
		counts[w]++
	}
	acc := make([]float64, dims)
	for w, n := range counts {
		h := newHasher()
		h.add(model)
		h.add("word:" + w)
		seed := h.sum()
		weight := 1 + math.Log(n) // repeats count, sublinearly
		x := seed
		for i := range acc {
			x += 0x9e3779b97f4a7c15
			acc[i] += weight * (float64(mix(x)>>11)/(1<<53)*2 - 1)
		}
	}
	var norm float64
	for _, f := range acc {
		norm += f * f
	}
	scale := 1 / math.Sqrt(norm)
	v := make([]float32, dims)
	for i, f := range acc {
		v[i] = float32(f * scale)
	}
	return v
}
