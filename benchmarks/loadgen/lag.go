package loadgen

import "slices"

// Lag is how far Herald's deliveries trail the core's commits: at the end of each second
// of the run, the events committed so far less the events handled so far. An event
// counts as handled when its SMS ended: the provider accepted it, or it failed for good
// (every event type of the mix has an SMS; loadgen's customers all have a phone).
type Lag struct {
	// Max is the largest lag of the run, in events.
	Max int `json:"max"`
	// AtLastCommit is the lag when the core's writers stopped.
	AtLastCommit int `json:"at_last_commit"`
	// GrowthPerSecond is the lag's slope over the measured seconds (lagOf):
	// about 0 when Herald keeps the core's pace, the shortfall in events per second
	// when it does not. Nil (left out of the JSON) when the run was too short to
	// measure it, as is the verdict: a 0 there would read as a flat lag.
	GrowthPerSecond *float64 `json:"growth_per_second,omitempty"`
}

const (
	// keepUpShare is the growth of the lag, as a share of the core's commit rate,
	// under which Herald keeps up: it delivers at least 98% of the core's pace, and
	// the rest is the seconds' noise.
	keepUpShare = 0.02
	// minLagSeconds is the shortest measured stretch that gets a verdict.
	minLagSeconds = 5
	// maxLagPoints bounds the seconds the slope is taken over.
	maxLagPoints = 600
)

// lagOf reads the lag from the run's seconds. The measured stretch is the seconds
// from skip (the warm-up) up to the last second with a commit, that last, partial
// second left out. keepsUp is nil when the stretch is shorter than minLagSeconds:
// a burst of a few seconds says nothing about a pace.
func lagOf(pts []Point, skip int) (lag Lag, keepsUp *bool) {
	last := -1
	for i, p := range pts {
		if p.Committed > 0 {
			last = i
		}
	}
	lags := lagSeries(pts)
	for _, l := range lags {
		lag.Max = max(lag.Max, l)
	}
	if last < 0 {
		return lag, nil
	}
	lag.AtLastCommit = lags[last]
	n := last - skip
	if n < minLagSeconds {
		return lag, nil
	}
	// Theil–Sen: the median of the slopes between every two measured seconds, so that
	// a stall of a second or two (a checkpoint, a collection) does not decide; at most
	// maxLagPoints seconds, evenly spaced, keep the pairs few in long runs.
	step := max(1, (n+maxLagPoints-1)/maxLagPoints)
	var xs []int
	rate := 0.0
	for i := skip; i < last; i++ {
		rate += float64(pts[i].Committed)
		if (i-skip)%step == 0 {
			xs = append(xs, i)
		}
	}
	slopes := make([]float64, 0, len(xs)*(len(xs)-1)/2)
	for a := range xs {
		for _, j := range xs[a+1:] {
			i := xs[a]
			slopes = append(slopes, float64(lags[j]-lags[i])/float64(j-i))
		}
	}
	slices.Sort(slopes)
	m := len(slopes) / 2
	growth := slopes[m]
	if len(slopes)%2 == 0 {
		growth = (slopes[m-1] + slopes[m]) / 2
	}
	g := round(growth, 1)
	lag.GrowthPerSecond = &g
	rate /= float64(n)
	ok := growth <= keepUpShare*rate
	return lag, &ok
}

// lagSeries is the lag at the end of each second: events committed so far less events
// handled so far.
func lagSeries(pts []Point) []int {
	var committed, ended int
	lags := make([]int, len(pts))
	for i, p := range pts {
		committed += p.Committed
		ended += p.Ended
		lags[i] = committed - ended
	}
	return lags
}
