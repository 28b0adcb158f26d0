package service_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/notify"
)

// TestPostgresPipelineReadsNoWholeTable: on PostgreSQL the pipeline reaches the rows of
// herald_deliveries and herald_notifications by key, also when the tables have no
// statistics (new, or autovacuum off), so its cost does not grow with their size.
// Events are delivered next to 90,000 recorded deliveries and 30,000 notifications,
// and the rows PostgreSQL read by sequential scans of the two tables
// (pg_stat_user_tables) must stay below 30,000, one reading of the smaller. A
// statement whose plan read a whole table per batch (the earlier-id lookup, until it
// probed the event index per event) made a 150,000-event run fall 88 s behind.
func TestPostgresPipelineReadsNoWholeTable(t *testing.T) {
	t.Parallel()
	url := testdb.Postgres(t)
	// One committer: fan-outs wait for each other's commits and share the next
	// transaction, so the batched statements carry many rows, as under load.
	cfg := testConfig(url)
	cfg.DBCommitters = 1
	svc, stop := startStoppable(t, cfg)
	ctx := context.Background()
	if _, err := svc.DB.W.ExecContext(ctx, `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane,
		address, status, occurred_at, created_at, updated_at) SELECT 'dlv_old' || g, 'old-' || (g / 3), 'x', 'sms',
		'normal', '+86138' || g, 'sent', g, g, g FROM generate_series(1, 90000) AS g`); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.DB.W.ExecContext(ctx, `INSERT INTO herald_notifications (id, type, status, occurred_at, created_at)
		SELECT 'old-' || g, 'x', 'fanned_out', g, g FROM generate_series(1, 30000) AS g`); err != nil {
		t.Fatal(err)
	}
	stats, err := sql.Open("pgx", testdb.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stats.Close() }()
	schema := ""
	if err := svc.DB.W.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	seqRead := func() int64 {
		var n int64
		err := stats.QueryRowContext(ctx, `SELECT COALESCE(SUM(seq_tup_read), 0) FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname IN ('herald_deliveries', 'herald_notifications')`, schema).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := seqRead()

	putRecipient(t, svc, notify.Recipient{ID: "cust-1", Locale: "en", TimeZone: "Europe/London",
		Contacts: notify.Contacts{Phone: "+8613800138000", Email: "alice@example.com"}})
	// One transaction: the pipeline reads the events as one batch and fans them out
	// side by side.
	var ids []string
	var es []notify.Event
	for i := 0; i < 300; i++ {
		e := posted(fmt.Sprintf("evt-%d", i), "cust-1", "12.34")
		e.AccountID = fmt.Sprintf("62220202%08d", i) // one at a time per account: each its own
		es = append(es, e)
		ids = append(ids, notify.DeliveryID(e.ID, e.OccurredAt, notify.ChannelSMS, "+8613800138000"),
			notify.DeliveryID(e.ID, e.OccurredAt, notify.ChannelEmail, "alice@example.com"),
			notify.DeliveryID(e.ID, e.OccurredAt, notify.ChannelInApp, "cust-1"))
	}
	commit(t, svc, false, es...)
	// Waited for by primary key, so that the test's own reads scan nothing.
	for _, id := range ids {
		waitFor(t, "delivery "+id, func() bool {
			d, err := svc.DB.Deliveries().Get(ctx, id)
			return err == nil && d.Status.Terminal()
		})
	}
	stop()
	// A backend reports its counts at least once a second while busy and when it exits;
	// wait until they stop changing.
	read, last := seqRead(), int64(-1)
	for deadline := time.Now().Add(15 * time.Second); read != last && time.Now().Before(deadline); {
		time.Sleep(1500 * time.Millisecond)
		read, last = seqRead(), read
	}
	if got := read - before; got >= 30000 {
		t.Fatalf("sequential scans read %d rows of herald_deliveries and herald_notifications while 300 events were delivered, want fewer than one table's", got)
	}
}
