package tokens

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// table is a compact BPE rank table: the bytes of every token, in rank
// order, in one blob, and an open-addressing hash from token bytes to rank.
// o200k_base (200k tokens) takes about 5 MB, against tens of MB for a
// map[string]int.
type table struct {
	blob  string   // the tokens' bytes, concatenated in rank order
	off   []uint32 // token r is blob[off[r]:off[r+1]]
	slots []uint32 // rank+1 of the token hashed there; 0 is empty
	mask  uint64
	seed  maphash.Seed
	split func(s string, i int) int // the pre-tokenizer
	// cache holds the counts of recent multi-token pieces (see pieceCount).
	cache [cacheSize]atomic.Pointer[cachedPiece]
	// texts holds the counts of recent whole texts (see countText).
	texts [textCacheSize]atomic.Pointer[cachedPiece]
}

// cacheSize is the number of multi-token pieces whose counts are cached
// (direct-mapped by hash). Like the word cache of Hugging Face's BPE
// tokenizers: prompts repeat (system prompts, tool definitions), and a
// long piece costs thousands of rank lookups to merge. Pieces up to
// maxCachedPiece bytes are cached, so the cache holds at most about 1 MiB.
const (
	cacheBits      = 12
	cacheSize      = 1 << cacheBits
	maxCachedPiece = 256
)

// textCacheSize is the number of whole texts (message contents, one per
// slot, direct-mapped by hash) whose counts are cached: a chat sends its
// whole history again on every turn, and system prompts repeat across
// calls, so most of a prompt was counted before (issue 17). Texts of
// minCachedText to MaxExactBytes bytes are cached: at most 1 MiB.
const (
	textCacheBits = 9
	textCacheSize = 1 << textCacheBits
	minCachedText = 64
)

type cachedPiece struct {
	piece string
	n     int
}

// loadTable parses the .tiktoken file of an encoding that
// github.com/pkoukk/tiktoken-go-loader embeds: one "base64 rank" per line,
// ranks 0..n-1 in order.
func loadTable(name string) (*table, error) {
	t := &table{seed: maphash.MakeSeed()}
	switch name {
	case CL100K:
		t.split = nextCL100K
	case O200K:
		t.split = nextO200K
	default:
		return nil, fmt.Errorf("tokens: unknown encoding %q", name)
	}
	f, err := assets.Assets.Open(name + ".tiktoken")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var blob []byte
	off := []uint32{0}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		sp := -1
		for i, c := range line {
			if c == ' ' {
				sp = i
				break
			}
		}
		if sp < 0 {
			return nil, fmt.Errorf("tokens: %s: bad line %q", name, line)
		}
		rank, err := strconv.Atoi(string(line[sp+1:]))
		if err != nil || rank != len(off)-1 {
			return nil, fmt.Errorf("tokens: %s: rank %q out of order", name, line[sp+1:])
		}
		blob, err = base64.StdEncoding.AppendDecode(blob, line[:sp])
		if err != nil {
			return nil, fmt.Errorf("tokens: %s: %w", name, err)
		}
		if len(blob) > math.MaxUint32 {
			return nil, errors.New("tokens: table too large")
		}
		off = append(off, uint32(len(blob)))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	n := len(off) - 1
	if n == 0 {
		return nil, fmt.Errorf("tokens: %s: empty table", name)
	}
	t.blob = string(blob) // one copy at the exact size; blob's slack is garbage
	t.off = append([]uint32(nil), off...)
	size := 1
	for size < 2*n {
		size <<= 1
	}
	t.slots = make([]uint32, size)
	t.mask = uint64(size - 1)
	for r := range n {
		tok := t.token(uint32(r))
		for i := maphash.String(t.seed, tok) & t.mask; ; i = (i + 1) & t.mask {
			if t.slots[i] == 0 {
				t.slots[i] = uint32(r) + 1
				break
			}
			if t.token(t.slots[i]-1) == tok {
				return nil, fmt.Errorf("tokens: %s: duplicate token %q", name, tok)
			}
		}
	}
	return t, nil
}

func (t *table) token(r uint32) string { return t.blob[t.off[r]:t.off[r+1]] }

// rank returns the rank of the token s, if s is one.
func (t *table) rank(s string) (uint32, bool) {
	return t.rankHashed(s, maphash.String(t.seed, s))
}

// rankHashed is rank with the hash of s given.
func (t *table) rankHashed(s string, h uint64) (uint32, bool) {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		v := t.slots[i]
		if v == 0 {
			return 0, false
		}
		if t.token(v-1) == s {
			return v - 1, true
		}
	}
}

// count returns the number of tokens of s (valid UTF-8) without special
// tokens: tiktoken's encode_ordinary, counted.
func (t *table) count(s string) int {
	n := 0
	for i := 0; i < len(s); {
		e := t.split(s, i)
		n += t.pieceCount(s[i:e])
		i = e
	}
	return n
}

// countText is count with the text cache: a text counted recently is
// hashed and compared, not tokenized again.
func (t *table) countText(s string) int {
	if len(s) < minCachedText || len(s) > MaxExactBytes {
		return t.count(s)
	}
	h := maphash.String(t.seed, s)
	slot := &t.texts[h>>(64-textCacheBits)]
	if c := slot.Load(); c != nil && c.piece == s {
		return c.n
	}
	n := t.count(s)
	slot.Store(&cachedPiece{piece: strings.Clone(s), n: n})
	return n
}

// noRank marks a pair that is not a token.
const noRank = math.MaxUint32

// pieceCount returns the number of tokens of one pre-token: 1 when the
// whole piece is a token (the common case), else the result of tiktoken's
// byte-pair merge: repeatedly merge the adjacent pair of lowest rank
// (leftmost on a tie) while any adjacent pair is a token.
func (t *table) pieceCount(p string) int {
	if len(p) <= 1 {
		return len(p)
	}
	h := maphash.String(t.seed, p)
	if _, ok := t.rankHashed(p, h); ok {
		return 1
	}
	slot := &t.cache[h>>(64-cacheBits)]
	if c := slot.Load(); c != nil && c.piece == p {
		return c.n
	}
	n := t.merge(p)
	if len(p) <= maxCachedPiece {
		slot.Store(&cachedPiece{piece: strings.Clone(p), n: n})
	}
	return n
}

// merge counts the tokens of a piece that is not a token itself.
func (t *table) merge(p string) int {
	if len(p) > longPiece {
		return t.pieceCountHeap(p)
	}
	type part struct{ start, rank uint32 }
	var buf [64]part
	var parts []part
	if len(p)+1 <= len(buf) {
		parts = buf[:len(p)+1]
	} else {
		parts = make([]part, len(p)+1)
	}
	// rankAt is the rank of the bytes from parts[i] to parts[i+2].
	rankAt := func(i int) uint32 {
		if i+2 < len(parts) {
			if r, ok := t.rank(p[parts[i].start:parts[i+2].start]); ok {
				return r
			}
		}
		return noRank
	}
	for i := range parts {
		parts[i] = part{uint32(i), noRank}
	}
	for i := 0; i+2 < len(parts); i++ {
		parts[i].rank = rankAt(i)
	}
	for len(parts) > 1 {
		minRank, minIdx := uint32(noRank), -1
		for i := 0; i+1 < len(parts); i++ {
			if parts[i].rank < minRank {
				minRank, minIdx = parts[i].rank, i
			}
		}
		if minIdx < 0 {
			break
		}
		i := minIdx
		// Merge parts i and i+1, then re-rank the pairs that changed.
		parts = append(parts[:i+1], parts[i+2:]...)
		parts[i].rank = rankAt(i)
		if i > 0 {
			parts[i-1].rank = rankAt(i - 1)
		}
	}
	return len(parts) - 1
}

// longPiece is the piece length above which pieceCountHeap is used: the
// linear scan for the lowest-ranked pair costs O(n^2).
const longPiece = 24

// pieceCountHeap is pieceCount for long pieces, in O(n log n): the parts
// are a linked list over byte offsets and the candidate merges a min-heap
// ordered by (rank, start), so the lowest rank, leftmost on a tie, comes
// first, as in the linear scan. Entries go stale when a neighbour merges;
// an entry is current when its left part still exists and still has that
// pair rank (the same left start and the same token means the same pair).
func (t *table) pieceCountHeap(p string) int {
	n := len(p)
	// Scratch on the stack for pieces up to 255 bytes.
	var (
		nextBuf, prevBuf [256]int32
		pairBuf          [256]uint32
		aliveBuf         [256]bool
		heapBuf          [256]heapEntry
	)
	next, prev, pair, alive := nextBuf[:0], prevBuf[:0], pairBuf[:0], aliveBuf[:0]
	h := pairHeap(heapBuf[:0])
	if n+1 > len(nextBuf) {
		next, prev, pair, alive = make([]int32, 0, n+1), make([]int32, 0, n+1), make([]uint32, 0, n+1), make([]bool, 0, n+1)
		h = make(pairHeap, 0, n)
	}
	next, prev, pair, alive = next[:n+1], prev[:n+1], pair[:n+1], alive[:n+1]
	// next[i]: start of the part after the one at i; pair[i]: rank of the
	// part at i merged with the next.
	for i := 0; i <= n; i++ {
		next[i], prev[i], alive[i], pair[i] = int32(i+1), int32(i-1), true, noRank
	}
	for i := int32(0); i+1 < int32(n); i++ {
		if r := t.pairRank(p, next, i); r != noRank {
			pair[i] = r
			h = h.push(heapEntry{r, i})
		}
	}
	parts := n
	for len(h) > 0 {
		var e heapEntry
		e, h = h.pop()
		if !alive[e.start] || pair[e.start] != e.rank {
			continue // stale
		}
		// Merge the part at e.start with the next one.
		j := next[e.start]
		alive[j] = false
		next[e.start] = next[j]
		prev[next[j]] = e.start
		parts--
		// Both pairs touching the merged part change (ranks are unique per
		// token, so a longer pair never has the old rank: old entries go
		// stale).
		r := t.pairRank(p, next, e.start)
		pair[e.start] = r
		if r != noRank {
			h = h.push(heapEntry{r, e.start})
		}
		if q := prev[e.start]; q >= 0 {
			r := t.pairRank(p, next, q)
			pair[q] = r
			if r != noRank {
				h = h.push(heapEntry{r, q})
			}
		}
	}
	return parts
}

// pairRank is the rank of the part at i of p merged with the next one.
func (t *table) pairRank(p string, next []int32, i int32) uint32 {
	j := next[i]
	if j >= int32(len(p)) {
		return noRank
	}
	if r, ok := t.rank(p[i:next[j]]); ok {
		return r
	}
	return noRank
}

type heapEntry struct {
	rank  uint32
	start int32
}

func (a heapEntry) less(b heapEntry) bool {
	return a.rank < b.rank || a.rank == b.rank && a.start < b.start
}

// pairHeap is a binary min-heap (container/heap without the interface
// calls).
type pairHeap []heapEntry

func (h pairHeap) push(e heapEntry) pairHeap {
	s := append(h, e)
	for i := len(s) - 1; i > 0; {
		up := (i - 1) / 2
		if !s[i].less(s[up]) {
			break
		}
		s[i], s[up] = s[up], s[i]
		i = up
	}
	return s
}

func (h pairHeap) pop() (heapEntry, pairHeap) {
	s := h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(s) && s[l].less(s[m]) {
			m = l
		}
		if r := l + 1; r < len(s) && s[r].less(s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	return top, s
}
