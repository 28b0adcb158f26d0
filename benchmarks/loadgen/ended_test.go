package loadgen

import (
	"bytes"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// TestEndedDeliveriesCountsTerminalStatuses reads the ended deliveries from metrics as
// Herald writes them, from its set (without evaluating its gauges) and from /metrics:
// terminal statuses of every channel count, attempts do not.
func TestEndedDeliveriesCountsTerminalStatuses(t *testing.T) {
	s := metrics.NewSet()
	for name, n := range map[string]uint64{
		`herald_deliveries_total{channel="sms",status="sent"}`:       40,
		`herald_deliveries_total{channel="email",status="sent"}`:     30,
		`herald_deliveries_total{channel="inapp",status="sent"}`:     20,
		`herald_deliveries_total{channel="sms",status="failed"}`:     3,
		`herald_deliveries_total{channel="sms",status="expired"}`:    2,
		`herald_deliveries_total{channel="email",status="poisoned"}`: 1,
		`herald_deliveries_total{channel="sms",status="retrying"}`:   500,
		`herald_deliveries_total{channel="sms",status="deferred"}`:   600,
		`herald_deliveries_total{channel="sms",status="fallback"}`:   700,
		`herald_poisoned_total{handler="fanout"}`:                    800,
	} {
		s.GetOrCreateCounter(name).Set(n)
	}
	s.GetOrCreateHistogram(`herald_delivery_latency_seconds{channel="sms"}`).Update(0.02)
	asked := 0
	s.NewGauge("herald_outbox_lag_seconds", func() float64 { asked++; return 0 }) // a gauge that asks the database
	if n := EndedDeliveriesIn(s); n != 96 || asked != 0 {
		t.Fatalf("ended deliveries in the set: %d, want 96; gauges evaluated %d times, want 0", n, asked)
	}
	var b bytes.Buffer
	s.WritePrometheus(&b)
	n, err := EndedDeliveries(&b)
	if err != nil {
		t.Fatal(err)
	}
	if n != 96 {
		t.Fatalf("ended deliveries: %d, want 96 (40+30+20 sent, 3 failed, 2 expired, 1 poisoned)", n)
	}
	if _, err := EndedDeliveries(strings.NewReader(`herald_deliveries_total{channel="sms",status="sent"} x` + "\n")); err == nil {
		t.Fatal("a malformed value must be an error, not a count")
	}
}
