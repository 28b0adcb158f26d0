package loadgen

import (
	"math"
	"testing"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("transaction.posted=90, otp.requested=5,balance.low=5")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || m.total() != 100 || m[1] != (MixEntry{"otp.requested", 5}) {
		t.Fatalf("parsed %+v", m)
	}
	for _, bad := range []string{"", "transaction.posted", "transaction.posted=0", "transaction.posted=x",
		"card.swallowed=1", "otp.requested=1,otp.requested=2"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// The types are spread over a run in their weights' proportions.
func TestMixPickFollowsWeights(t *testing.T) {
	m := Mix{{"transaction.posted", 90}, {"otp.requested", 5}, {"balance.low", 5}}
	const n = 20000
	got := map[string]int{}
	for i := 0; i < n; i++ {
		got[m.pick(i)]++
	}
	for _, e := range m {
		share := 100 * float64(got[e.Type]) / n
		if math.Abs(share-float64(e.Weight)) > 1 {
			t.Errorf("%s: %.1f%% of events, want %d%%", e.Type, share, e.Weight)
		}
	}
	// Interleaved, not in runs: the first 100 events already hold every type.
	first := map[string]bool{}
	for i := 0; i < 100; i++ {
		first[m.pick(i)] = true
	}
	if len(first) != 3 {
		t.Errorf("first 100 events hold %d types, want 3", len(first))
	}
	if d := m.deliveries(100); d != 90*3+5*1+5*3 {
		t.Errorf("deliveries(100) = %d", d)
	}
}
