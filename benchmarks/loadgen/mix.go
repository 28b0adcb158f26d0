package loadgen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/notify"
)

// Mix is the share of each event type in a run, e.g. 90 transaction.posted for every
// 5 otp.requested and 5 balance.low.
type Mix []MixEntry

// MixEntry is one event type's weight.
type MixEntry struct {
	Type   string
	Weight int
}

// DefaultMix is transaction alerts only: three deliveries per event (SMS, email,
// in-app), the shape the targets are stated for.
var DefaultMix = Mix{{Type: notify.TypeTransactionPosted, Weight: 1}}

// mixTypes are the event types loadgen can write, with the deliveries each makes for
// its customers (a phone and an email, no push token or WeChat id).
var mixTypes = map[string]int{
	notify.TypeTransactionPosted:   3,
	notify.TypeTransactionDeclined: 3,
	notify.TypeBalanceLow:          3,
	notify.TypeOTPRequested:        1,
	notify.TypeSecurityLogin:       2,
}

// ParseMix reads "type=weight,type=weight" (weights are positive integers).
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, w, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want type=weight", part)
		}
		if _, known := mixTypes[typ]; !known {
			return nil, fmt.Errorf("mix: unknown event type %q (one of %s)", typ, strings.Join(knownMixTypes(), ", "))
		}
		if seen[typ] {
			return nil, fmt.Errorf("mix: %s given twice", typ)
		}
		seen[typ] = true
		n, err := strconv.Atoi(w)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("mix: weight of %s must be a positive integer, not %q", typ, w)
		}
		m = append(m, MixEntry{Type: typ, Weight: n})
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("mix %q names no event type", s)
	}
	return m, nil
}

func knownMixTypes() []string {
	var ts []string
	for t := range mixTypes {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

func (m Mix) total() int {
	n := 0
	for _, e := range m {
		n += e.Weight
	}
	return n
}

// pick is the type of event i: spread evenly over the run (a multiplicative hash of
// i), the same for every run.
func (m Mix) pick(i int) string {
	t := m.total()
	x := int(uint64(i) * 2654435761 % uint64(t)) //nolint:gosec // i >= 0
	for _, e := range m {
		if x < e.Weight {
			return e.Type
		}
		x -= e.Weight
	}
	return m[len(m)-1].Type
}

// deliveries is about how many deliveries n events make (for progress).
func (m Mix) deliveries(n int) int {
	sum := 0
	for _, e := range m {
		sum += e.Weight * mixTypes[e.Type]
	}
	return n * sum / m.total()
}

// Shares is the mix as type → percent, for the summary.
func (m Mix) Shares() map[string]float64 {
	out := map[string]float64{}
	for _, e := range m {
		out[e.Type] = round(100*float64(e.Weight)/float64(m.total()), 1)
	}
	return out
}
