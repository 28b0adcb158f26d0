package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// MySQL statements whose plan depends on the optimizer's estimates are told which index
// to use where a wrong estimate made MariaDB read the whole table. Each test here puts a
// table in the state that misled it and counts the rows the storage engine hands out to
// the session (Handler_read_*, which MySQL and MariaDB both have).

// sessionReads returns the session's Handler_read_* counters whose names end in one of
// suffixes (e.g. "rnd_next", the rows read by scans), summed.
// conn is a connection or a transaction (the counters are its session's).
func sessionReads(t *testing.T, conn interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, suffixes ...string) int64 {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), "SHOW SESSION STATUS LIKE 'Handler_read%'")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var sum int64
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		for _, s := range suffixes {
			if strings.HasSuffix(strings.ToLower(name), s) {
				sum += n
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// mysqlDeliveries opens a MySQL database of its own with n deliveries of status, three
// an event, ids dlv_0… and events PREFIX0….
func mysqlDeliveries(t *testing.T, prefix string, n int, status string) (*sqlstore.DB, *sql.Conn) {
	t.Helper()
	db, _ := openMySQL(t)
	ctx := context.Background()
	if err := db.Migrate(ctx, []string{"sms"}); err != nil {
		t.Fatal(err)
	}
	var rows []string
	args := make([]any, 0, 4*n)
	for i := range n {
		rows = append(rows, "(?, ?, 'x', 'sms', 'normal', ?, ?, 1, 1, 1)")
		args = append(args, fmt.Sprintf("dlv_%06d", i), fmt.Sprintf("%s%d", prefix, i/3), fmt.Sprintf("+86138%d", i), status)
	}
	if _, err := db.W.ExecContext(ctx, `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, address,
		status, occurred_at, created_at, updated_at) VALUES `+strings.Join(rows, ","), args...); err != nil {
		t.Fatal(err)
	}
	conn, err := db.W.Conn(ctx) // the counters are the session's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return db, conn
}

// TestMySQLRecordedDeliveriesAreReadThroughTheEventIndex: a MySQL fan-out reads the
// deliveries already recorded for a group's events with one IN list, and it must reach
// them through the event index. With more values than eq_range_index_dive_limit (200)
// MariaDB estimates the list from the index statistics and may scan instead: it did for
// 20 of 389 such reads in a loadgen catch-up, each reading every delivery recorded so
// far, and it does here, for 250 events in a 600-row table.
func TestMySQLRecordedDeliveriesAreReadThroughTheEventIndex(t *testing.T) {
	t.Parallel()
	_, conn := mysqlDeliveries(t, "e-", 600, "sent")
	// 250 events of a group: 100 with their three deliveries recorded, 150 new.
	events := make([]any, 0, 250)
	for e := 100; e < 350; e++ {
		events = append(events, fmt.Sprintf("e-%d", e))
	}
	before := sessionReads(t, conn, "rnd_next")
	rows, err := conn.QueryContext(context.Background(), sqlstore.RecordedInMySQL(len(events)), events...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	found := 0
	for rows.Next() {
		found++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if found != 300 {
		t.Fatalf("read %d recorded deliveries of 250 events, want the 300 of the 100 recorded ones", found)
	}
	if n := sessionReads(t, conn, "rnd_next") - before; n > 0 {
		t.Fatalf("reading the recorded deliveries of 250 events scanned %d rows of a 600-row table, want none (the event index)", n)
	}
}

// TestMySQLPendingReadsTheStatusIndex: loadgen counts a run's unfinished deliveries
// every 200 ms to 2 s (Deliveries.Pending). A run's deliveries are inserted queued and
// updated soon after; with statistics taken while they were queued, MariaDB counted the
// few still pending by reading every delivery of the run (4.1 s of its 50 s of
// statements in a 100,000-event catch-up). Here the statistics are taken with 3,000
// deliveries queued, then all but 10 are sent: the count must read about those 10
// through the status index, not the table.
func TestMySQLPendingReadsTheStatusIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, conn := mysqlDeliveries(t, "run1-", 3000, "queued")
	if _, err := conn.ExecContext(ctx, `ANALYZE TABLE herald_deliveries`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE herald_deliveries SET status = 'sent' WHERE id < 'dlv_002990'`); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Deliveries().Pending(ctx, "run1-"); err != nil || n != 10 {
		t.Fatalf("Pending = %d (%v), want 10", n, err)
	}
	before := sessionReads(t, conn, "")
	var n int
	if err := conn.QueryRowContext(ctx, db.Deliveries().PendingQuery(), "queued", "sending", "run1-%").Scan(&n); err != nil || n != 10 {
		t.Fatalf("the count = %d (%v), want 10", n, err)
	}
	if read := sessionReads(t, conn, "") - before; read > 100 {
		t.Fatalf("counting 10 pending deliveries of 3,000 read %d rows, want the status index's few", read)
	}
}
