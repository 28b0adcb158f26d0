package loadgen

import (
	"math"
	"strconv"
	"testing"
)

// pace builds n seconds in which the core commits rate events a second and Herald
// delivers deliver a second, starting a second later, then drains what is left.
func pace(n, rate, deliver int) []Point {
	var pts []Point
	backlog := 0
	for s := 0; s < n || backlog > 0; s++ {
		p := Point{Second: s}
		if s < n {
			p.Committed = rate
		}
		if s > 0 {
			p.Ended = min(deliver, backlog)
		}
		backlog += p.Committed - p.Ended
		pts = append(pts, p)
	}
	return pts
}

// stall makes Herald deliver nothing in second s and catch up in the next.
func stall(pts []Point, s int) []Point {
	pts[s+1].Ended += pts[s].Ended
	pts[s].Ended = 0
	return pts
}

// shrink starts the lag n events higher and takes one event off it every 25 seconds,
// by handling one event more in each 25th second.
func shrink(pts []Point, n int) []Point {
	pts[0].Committed += n
	for s := 25; s < len(pts); s += 25 {
		pts[s].Ended++
	}
	return pts
}

func TestLagVerdict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pts     []Point
		skip    int
		growth  float64
		max     int
		atLast  int
		judged  bool
		verdict bool
	}{
		{name: "keeps the pace", pts: pace(20, 1000, 1200), growth: 0, max: 1000, atLast: 1000, judged: true, verdict: true},
		{name: "falls behind by a tenth", pts: pace(20, 1000, 900), growth: 100, max: 2900, atLast: 2900, judged: true},
		{name: "half the pace", pts: pace(20, 1000, 500), growth: 500, max: 10500, atLast: 10500, judged: true},
		{name: "one percent short is noise", pts: pace(20, 1000, 990), growth: 10, max: 1190, atLast: 1190, judged: true, verdict: true},
		{name: "a burst too short to judge", pts: pace(4, 1000, 500), max: 2500, atLast: 2500},
		{name: "the warm-up left out, too short", pts: pace(8, 1000, 900), skip: 4, max: 1700, atLast: 1700},
		{name: "the warm-up left out", pts: pace(12, 1000, 900), skip: 4, growth: 100, max: 2100, atLast: 2100, judged: true},
		{name: "a stall near the end does not decide", pts: stall(pace(10, 100, 150), 8), growth: 0, max: 200, atLast: 100, judged: true, verdict: true},
		{name: "a long run", pts: pace(3000, 1000, 990), growth: 10, max: 30990, atLast: 30990, judged: true, verdict: true},
		// The lag shrinks by 0.04 events a second: rounded, a growth of 0, not -0.
		{name: "a lag shrinking too slowly to show", pts: shrink(pace(400, 100, 100), 20), growth: 0, max: 120, atLast: 105, judged: true, verdict: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lag, keeps := lagOf(tc.pts, tc.skip)
			if lag.Max != tc.max || lag.AtLastCommit != tc.atLast {
				t.Fatalf("lag %+v, want max %d, at last commit %d", lag, tc.max, tc.atLast)
			}
			// The slope is measured exactly when the verdict is given: a run too short
			// to judge has none, rather than a 0 that would read as a flat lag.
			if g := lag.GrowthPerSecond; (g != nil) != tc.judged || g != nil && (*g != tc.growth || math.Signbit(*g) != math.Signbit(tc.growth)) {
				got := "none"
				if g != nil {
					got = strconv.FormatFloat(*g, 'f', -1, 64)
				}
				t.Fatalf("growth %s, want measured %v and %.1f", got, tc.judged, tc.growth)
			}
			if (keeps != nil) != tc.judged || keeps != nil && *keeps != tc.verdict {
				t.Fatalf("keeps up %v, want judged %v and %v", keeps, tc.judged, tc.verdict)
			}
		})
	}
}
