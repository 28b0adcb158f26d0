package service

import (
	"context"
	"errors"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/notify"
)

// sink answers RecordReport by message id: "known" is found, "broken" fails.
type sink struct{}

func (sink) RecordReport(_ context.Context, _ string, r notify.Report) (bool, error) {
	switch r.MessageID {
	case "known":
		return true, nil
	case "broken":
		return false, errors.New("database down")
	}
	return false, nil
}

// TestSMPPReportsAreCounted: the reports an SMPP connection records are counted by
// whether they found their delivery, as the receipts endpoint counts its own; a report
// that could not be recorded is not counted.
func TestSMPPReportsAreCounted(t *testing.T) {
	set := metrics.NewSet()
	c := countedReports{sink{}, set}
	for _, id := range []string{"known", "unknown", "known", "broken", "unknown", "unknown"} {
		found, err := c.RecordReport(t.Context(), "smsc1", notify.Report{MessageID: id})
		if want := id == "known"; found != want || (err != nil) != (id == "broken") {
			t.Fatalf("%s: found %v, error %v", id, found, err)
		}
	}
	matched := set.GetOrCreateCounter(`herald_delivery_reports_total{matched="true"}`).Get()
	unmatched := set.GetOrCreateCounter(`herald_delivery_reports_total{matched="false"}`).Get()
	if matched != 2 || unmatched != 3 {
		t.Fatalf("matched %d, unmatched %d; want 2 and 3", matched, unmatched)
	}
}
