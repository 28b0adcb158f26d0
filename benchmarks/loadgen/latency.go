package loadgen

import (
	"context"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// Latencies from outbox commit to provider acceptance are recorded in an HDR histogram
// in microseconds, from 1 µs to one hour with three significant figures (a value is
// within 0.1% of what was recorded, a longer one counts as an hour): its size is fixed
// (tens of kilobytes), however many deliveries a run makes.
const (
	latencyMaxUs   = 3_600_000_000
	latencySigFigs = 3
)

// NewLatencies returns an empty latency histogram.
func NewLatencies() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxUs, latencySigFigs)
}

// RecordLatency adds one latency in microseconds, clamped to the histogram's range.
func RecordLatency(h *hdrhistogram.Histogram, us int64) {
	_ = h.RecordValue(min(max(us, 1), latencyMaxUs)) // in range: cannot fail
}

// Latencies are a run's latency histograms: every sent delivery's, from the outbox
// commit to the provider's acceptance (All); the same by channel; and every sent
// delivery's first hop, from the outbox commit to the fan-out's record of it (Record:
// the outbox read, the event's decode and render, the fan-out's commit).
type Latencies struct {
	All       *hdrhistogram.Histogram
	ByChannel map[notify.Channel]*hdrhistogram.Histogram
	Record    *hdrhistogram.Histogram
}

// ReadLatencies streams the latencies of the deliveries of events whose id starts with
// prefix, and that occurred at or after since (zero: all), into new histograms.
func ReadLatencies(ctx context.Context, db *sqlstore.DB, prefix string, since time.Time) (Latencies, error) {
	ls := Latencies{All: NewLatencies(), ByChannel: map[notify.Channel]*hdrhistogram.Histogram{}, Record: NewLatencies()}
	err := db.Deliveries().Latencies(ctx, prefix, since, func(l sqlstore.DeliveryLatency) {
		RecordLatency(ls.All, l.Sent)
		RecordLatency(ls.Record, l.Record)
		h := ls.ByChannel[l.Channel]
		if h == nil {
			h = NewLatencies()
			ls.ByChannel[l.Channel] = h
		}
		RecordLatency(h, l.Sent)
	})
	return ls, err
}

// byChannel summarises each channel's latencies in milliseconds.
func (ls Latencies) byChannel() map[notify.Channel]Latency {
	out := make(map[notify.Channel]Latency, len(ls.ByChannel))
	for ch, h := range ls.ByChannel {
		out[ch] = Percentiles(h)
	}
	return out
}

// Percentiles summarises a latency histogram in milliseconds.
func Percentiles(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return round(float64(us)/1000, 2) }
	return Latency{P50: ms(h.ValueAtQuantile(50)), P95: ms(h.ValueAtQuantile(95)),
		P99: ms(h.ValueAtQuantile(99)), Max: ms(h.Max())}
}
