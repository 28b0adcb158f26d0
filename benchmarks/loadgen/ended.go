package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/notify"
)

const deliveriesTotal = "herald_deliveries_total{"

// endedCounter reports whether the series name is a count of deliveries that reached an
// end: herald_deliveries_total with a terminal status (sent, failed, expired,
// poisoned), any channel. The other statuses (retrying, deferred, fallback) count
// attempts, not ends.
func endedCounter(name string) bool {
	if !strings.HasPrefix(name, deliveriesTotal) {
		return false
	}
	_, status, ok := strings.Cut(name, `status="`)
	status, _, _ = strings.Cut(status, `"`)
	return ok && notify.Status(status).Terminal()
}

// EndedDeliveriesIn sums the ended deliveries of a metrics set (Herald in this
// process). It reads the counters alone: writing the set out would evaluate its
// gauges, some of which ask the database.
func EndedDeliveriesIn(s *metrics.Set) int64 {
	var n uint64
	for _, name := range s.ListMetricNames() {
		if endedCounter(name) {
			n += s.GetOrCreateCounter(name).Get()
		}
	}
	return int64(n) //nolint:gosec // a count of deliveries
}

// EndedDeliveries sums the ended deliveries of Herald's metrics in the Prometheus text
// format (GET /metrics).
func EndedDeliveries(r io.Reader) (int64, error) {
	var n int64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, "} ")
		if !endedCounter(name + "}") {
			continue
		}
		if !ok {
			return 0, fmt.Errorf("metrics: malformed line %q", line)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: line %q: %w", line, err)
		}
		n += v
	}
	return n, sc.Err()
}
