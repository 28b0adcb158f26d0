package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/notify"
)

const deliveriesTotal = "herald_deliveries_total{"

// EndedDeliveries sums, from Herald's metrics in the Prometheus text format (GET
// /metrics, or metrics.Set.WritePrometheus), the deliveries that reached an end:
// herald_deliveries_total with a terminal status (sent, failed, expired, poisoned),
// every channel. The other statuses (retrying, deferred, fallback) count attempts, not
// ends.
func EndedDeliveries(r io.Reader) (int64, error) {
	var n int64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, deliveriesTotal) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(deliveriesTotal):], "} ")
		if !ok {
			return 0, fmt.Errorf("metrics: malformed line %q", line)
		}
		_, status, ok := strings.Cut(labels, `status="`)
		if !ok {
			continue
		}
		status, _, _ = strings.Cut(status, `"`)
		if !notify.Status(status).Terminal() {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: line %q: %w", line, err)
		}
		n += v
	}
	return n, sc.Err()
}
