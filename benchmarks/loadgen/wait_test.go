package loadgen

import (
	"testing"
	"time"
)

// TestDueToAsk: waitDone asks the database about the end promptly once Herald's
// counters say the run may be done, whatever a count costs, and spaces the other
// questions by ten times the last count's duration, so that the count (which reads
// every delivery of the run on PostgreSQL) stays a small share of the database's work
// in a long run.
func TestDueToAsk(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name               string
		since, cost        time.Duration
		metrics, mayBeDone bool
		want               bool
	}{
		{"counters moving, a cheap count: every two seconds", 1999 * ms, 12 * ms, true, false, false},
		{"counters moving, two seconds", 2000 * ms, 12 * ms, true, false, true},
		{"counters moving, a 600 ms count: not after two seconds", 2500 * ms, 600 * ms, true, false, false},
		{"counters moving, a 600 ms count: after six seconds", 6000 * ms, 600 * ms, true, false, true},
		{"may be done: 200 ms after the last question", 200 * ms, 600 * ms, true, true, true},
		{"may be done: not sooner", 199 * ms, 0, true, true, false},
		{"no counters, a cheap count: every 100 ms", 100 * ms, 5 * ms, false, false, true},
		{"no counters, a 600 ms count: not after 100 ms", 100 * ms, 600 * ms, false, false, false},
		{"no counters, a 600 ms count: after six seconds", 6000 * ms, 600 * ms, false, false, true},
		{"first question (never asked)", time.Since(time.Time{}), 0, true, false, true},
	} {
		if got := dueToAsk(c.since, c.cost, c.metrics, c.mayBeDone); got != c.want {
			t.Errorf("%s: dueToAsk(%s, %s, metrics %t, may be done %t) = %t, want %t",
				c.name, c.since, c.cost, c.metrics, c.mayBeDone, got, c.want)
		}
	}
}
