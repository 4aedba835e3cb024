package route

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Errors of Plan. Callers branch on them with errors.Is / errors.As.
var (
	// ErrRegionNotAllowed: none of the alias's targets is in a region the
	// caller may use.
	ErrRegionNotAllowed = errors.New("route: no target in the caller's allowed regions")
	// ErrNoHealthyBackend: every allowed target's circuit is open and none
	// is cooling. A *[Unavailable] carries it.
	ErrNoHealthyBackend = errors.New("route: no healthy backend")
	// ErrAllCooling: every allowed target is cooling (or open). A
	// *[Unavailable] carries it with the shortest wait.
	ErrAllCooling = errors.New("route: every backend is cooling")
)

// Unavailable says no allowed target can take a call now and when the
// first one can again.
type Unavailable struct {
	// Reason is ErrAllCooling or ErrNoHealthyBackend.
	Reason error
	// RetryAfter is the shortest wait until a target is tried again.
	RetryAfter time.Duration
}

func (e *Unavailable) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Reason, e.RetryAfter)
}

func (e *Unavailable) Unwrap() error { return e.Reason }

// Request is what routing needs to know about one call.
type Request struct {
	// Regions the caller may be served from; empty means any. Targets on
	// backends outside them are never planned, on failover neither.
	Regions []string
	// Sticky identifies the caller (key id or an affinity header): inside
	// a tier the targets are ordered by weighted rendezvous hashing of it,
	// so one caller keeps one target while the set of healthy targets is
	// unchanged. Empty means weighted random order.
	Sticky string
	// Backend, when set, is tried first if one of its targets is eligible
	// (Responses API affinity: the backend that holds the conversation).
	Backend string
}

// Plan returns the order in which to try m's targets for q: targets outside
// q.Regions, cooling or with an open circuit are left out; the rest are in
// priority tiers, weighted inside a tier (rendezvous hashing of q.Sticky,
// or random; with m.Latency, a tier of one model version is weighted by
// recent time to first byte and spare capacity instead, see
// latencyShuffle), with q.Backend's target moved to the front. dst is reused if
// large enough.
//
// When nothing is left Plan returns ErrRegionNotAllowed, or an
// *[Unavailable] wrapping ErrAllCooling (some target is cooling; RetryAfter
// is the shortest cooling wait) or ErrNoHealthyBackend (all circuits open).
func (m *Model) Plan(dst []Target, q Request) ([]Target, error) {
	now := m.set.clock().UnixNano()
	dst = dst[:0]
	allowed := 0
	var cooling, open int64 = math.MaxInt64, math.MaxInt64
	for _, t := range m.Targets {
		if !regionAllowed(t.Backend.Region, q.Regions) {
			continue
		}
		allowed++
		if t.dep != nil {
			if u := t.dep.coolUntil.Load(); u > now {
				cooling = min(cooling, u-now)
				continue
			}
		}
		if !t.Backend.Health.ready(now) {
			open = min(open, t.Backend.Health.until.Load()-now)
			continue
		}
		dst = append(dst, t)
	}
	if allowed == 0 {
		return dst, ErrRegionNotAllowed
	}
	if len(dst) == 0 {
		if cooling != math.MaxInt64 {
			return dst, &Unavailable{Reason: ErrAllCooling, RetryAfter: time.Duration(cooling)}
		}
		return dst, &Unavailable{Reason: ErrNoHealthyBackend, RetryAfter: time.Duration(max(open, 0))}
	}
	var key uint64
	if q.Sticky != "" {
		key = hashString(q.Sticky)
	}
	for start := 0; start < len(dst); {
		end := start + 1
		for end < len(dst) && dst[end].Priority == dst[start].Priority {
			end++
		}
		if end-start > 1 {
			switch tier := dst[start:end]; {
			case m.Latency && oneVersion(tier):
				latencyShuffle(tier, time.Unix(0, now))
			case q.Sticky != "":
				rendezvous(tier, key)
			default:
				weightedShuffle(tier, nil)
			}
		}
		start = end
	}
	if q.Backend != "" {
		for i := range dst {
			if dst[i].Backend.Name == q.Backend {
				t := dst[i]
				copy(dst[1:i+1], dst[:i])
				dst[0] = t
				break
			}
		}
	}
	return dst, nil
}

// regionAllowed: a target without a region is never allowed to a caller
// limited to some regions (its residency cannot be shown).
func regionAllowed(region string, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(a, region) {
			return region != ""
		}
	}
	return false
}

// rendezvous orders ts by weighted rendezvous (highest random weight)
// score for key: score = weight / -ln(u), u uniform in (0,1) from the hash
// of key and target. The first target is the caller's; the chance a target
// comes first is its share of the tier's weight, and removing one target
// moves only the callers that had it first.
func rendezvous(ts []Target, key uint64) {
	var buf [16]float64
	var scores []float64
	if len(ts) <= len(buf) {
		scores = buf[:len(ts)]
	} else {
		scores = make([]float64, len(ts))
	}
	for i := range ts {
		seed := ts[i].seed
		if seed == 0 {
			seed = targetSeed(ts[i].Backend.Name, ts[i].Deployment)
		}
		h := mix64(key ^ mix64(seed))
		u := (float64(h>>11) + 0.5) / (1 << 53) // (0,1)
		scores[i] = float64(ts[i].Weight) / -math.Log(u)
	}
	// Insertion sort, descending: tiers are small.
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && scores[j] > scores[j-1]; j-- {
			scores[j], scores[j-1] = scores[j-1], scores[j]
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// hashString is FNV-1a, inlined so hashing a key allocates nothing.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer: FNV alone mixes its last bytes poorly.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// weightedShuffle is weighted sampling without replacement: load spreads
// by weight when the caller is unknown.
func weightedShuffle(ts []Target, rng *rand.Rand) {
	for i := 0; i < len(ts)-1; i++ {
		total := 0
		for _, t := range ts[i:] {
			total += t.Weight
		}
		if total <= 0 {
			return
		}
		var x int
		if rng != nil {
			x = rng.IntN(total)
		} else {
			x = rand.IntN(total)
		}
		for j := i; j < len(ts); j++ {
			x -= ts[j].Weight
			if x < 0 {
				ts[i], ts[j] = ts[j], ts[i]
				break
			}
		}
	}
}
