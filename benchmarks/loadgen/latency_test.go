package loadgen

import (
	"math"
	"strings"
	"testing"
)

// TestPercentilesFromHistogram records 1 ms .. 100 s in 1 ms steps (shuffled order does
// not matter to a histogram) and checks each percentile is within the histogram's 0.1%.
func TestPercentilesFromHistogram(t *testing.T) {
	h := NewLatencies()
	for ms := int64(1); ms <= 100_000; ms++ {
		RecordLatency(h, ms*1000)
	}
	RecordLatency(h, -5)             // a clock step backwards counts as 1 µs
	RecordLatency(h, latencyMaxUs*2) // beyond the range counts as the range's end
	got := Percentiles(h)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", got.P50, 50_000}, {"p95", got.P95, 95_000}, {"p99", got.P99, 99_000}, {"max", got.Max, latencyMaxUs / 1000}} {
		if math.Abs(c.got-c.want)/c.want > 0.002 {
			t.Errorf("%s = %v ms, want %v ± 0.2%%", c.name, c.got, c.want)
		}
	}
	if h.TotalCount() != 100_002 {
		t.Errorf("count %d", h.TotalCount())
	}
	if (Percentiles(nil) != Latency{}) || (Percentiles(NewLatencies()) != Latency{}) {
		t.Error("an empty histogram must give zero percentiles")
	}
}

// TestLatencySVGCountsEveryDelivery checks the report's distribution adds up to the
// histogram's count and puts values in their decade.
func TestLatencySVGCountsEveryDelivery(t *testing.T) {
	h := NewLatencies()
	for i := 0; i < 7; i++ {
		RecordLatency(h, 15_000) // 15 ms: the 10–16 ms bucket (five per decade)
	}
	RecordLatency(h, 2_000_000) // 2 s
	svg := latencySVG(h)
	if !strings.Contains(svg, "<title>10–16 ms: 7</title>") || !strings.Contains(svg, "<title>1585–2512 ms: 1</title>") {
		t.Fatalf("buckets wrong:\n%s", svg)
	}
	if latencySVG(nil) != "<p>no data</p>" {
		t.Error("nil histogram")
	}
}
