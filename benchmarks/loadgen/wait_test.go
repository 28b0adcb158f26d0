package loadgen

import (
	"testing"
	"time"
)

// TestDueToAsk: waitDone asks the database about the end promptly once Herald's
// counters have counted every delivery, whatever a count costs, and spaces every other
// question by ten times the last count's duration, so that the count (which reads
// every delivery of the run on PostgreSQL) stays a small share of the database's work
// in a long run or a long stall.
func TestDueToAsk(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name        string
		since, cost time.Duration
		st          countersState
		want        bool
	}{
		{"moving, a cheap count: not before two seconds", 1999 * ms, 12 * ms, countersMoving, false},
		{"moving, a cheap count: every two seconds", 2000 * ms, 12 * ms, countersMoving, true},
		{"moving, a 600 ms count: not after two seconds", 2500 * ms, 600 * ms, countersMoving, false},
		{"moving, a 600 ms count: after six seconds", 6000 * ms, 600 * ms, countersMoving, true},
		{"done: 200 ms after the last question, whatever the cost", 200 * ms, 600 * ms, countersDone, true},
		{"done: not sooner", 199 * ms, 0, countersDone, false},
		{"still, a cheap count: 200 ms after the last question", 200 * ms, 12 * ms, countersStill, true},
		{"still, a 600 ms count: not after a second", 1000 * ms, 600 * ms, countersStill, false},
		{"still, a 600 ms count: after six seconds", 6000 * ms, 600 * ms, countersStill, true},
		{"unread, a cheap count: every 100 ms", 100 * ms, 5 * ms, countersUnread, true},
		{"unread, a 600 ms count: not after 100 ms", 100 * ms, 600 * ms, countersUnread, false},
		{"unread, a 600 ms count: after six seconds", 6000 * ms, 600 * ms, countersUnread, true},
		{"first question (never asked)", time.Since(time.Time{}), 0, countersMoving, true},
	} {
		if got := dueToAsk(c.since, c.cost, c.st); got != c.want {
			t.Errorf("%s: dueToAsk(%s, %s, %d) = %t, want %t", c.name, c.since, c.cost, c.st, got, c.want)
		}
	}
}
