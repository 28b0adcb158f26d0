package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/notify"
)

// TestBatchedWritesKeepEachCallersResult: writes of many concurrent callers share
// multi-row statements (group commit); each caller must still get its own result: its
// own sandbox id, inbox id, claim and sent record, and one claim per delivery even when
// one owner claims the same delivery twice at once.
func TestBatchedWritesKeepEachCallersResult(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		const n = 60
		ds := make([]notify.Delivery, n)
		for i := range ds {
			ds[i] = notify.Delivery{ID: fmt.Sprintf("bd-%02d", i), EventID: "be", EventType: "x", Channel: notify.ChannelSMS,
				Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: time.Now()}
		}
		if err := db.Deliveries().InsertQueued(ctx, db.W, ds); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		claimed := map[string]int{}
		for i := 0; i < 2*n; i++ { // every delivery claimed twice by the same owner
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := ds[i%n].ID
				c, err := db.Deliveries().Claim(ctx, id, "owner", time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if c.State == sqlstore.Claimed {
					mu.Lock()
					claimed[id]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, d := range ds {
			if claimed[d.ID] != 1 {
				t.Fatalf("delivery %s claimed %d times, want once", d.ID, claimed[d.ID])
			}
		}
		if _, err := db.Deliveries().Claim(ctx, "no-such", "owner", time.Minute); err == nil {
			t.Fatal("claiming an unknown delivery succeeded")
		}
		inbox := make([]int64, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mid := fmt.Sprintf("sbx-%d", i)
				err := db.SandboxSends().Add(ctx, sqlstore.SandboxSend{DeliveryID: ds[i].ID, MessageID: mid, Channel: "sms",
					Address: fmt.Sprintf("+86138%08d", i), Subject: fmt.Sprint("s", i), Body: fmt.Sprint("b", i), AcceptedAt: time.UnixMicro(int64(1000 + i))})
				if err != nil {
					t.Error(err)
					return
				}
				if inbox[i], err = db.Inbox().Add(ctx, "r1", ds[i].ID, "x", "t", fmt.Sprint(i)); err != nil {
					t.Error(err)
					return
				}
				if err := db.Deliveries().MarkSent(ctx, ds[i].ID, notify.Receipt{Provider: "p", ProviderMessageID: mid}, time.Now()); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for i, d := range ds {
			// Each send's values stay together in the group's multi-row insert.
			var got, mid, addr, subject, body string
			var at int64
			if err := db.R.QueryRow(db.Rebind(`SELECT delivery_id, message_id, address, subject, body, accepted_at FROM herald_sandbox_sends
				WHERE delivery_id = ?`), d.ID).Scan(&got, &mid, &addr, &subject, &body, &at); err != nil ||
				mid != fmt.Sprintf("sbx-%d", i) || addr != fmt.Sprintf("+86138%08d", i) || subject != fmt.Sprint("s", i) ||
				body != fmt.Sprint("b", i) || at != int64(1000+i) {
				t.Fatalf("sandbox send of %s: message %q, address %q, subject %q, body %q, accepted at %d (%v)", d.ID, mid, addr, subject, body, at, err)
			}
			if err := db.R.QueryRow(db.Rebind(`SELECT delivery_id FROM herald_inbox WHERE id = ?`), inbox[i]).Scan(&got); err != nil || got != d.ID {
				t.Fatalf("inbox id %d of %s belongs to %q (%v)", inbox[i], d.ID, got, err)
			}
			g, err := db.Deliveries().Get(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if g.Status != notify.StatusSent || g.ProviderMessageID != fmt.Sprintf("sbx-%d", i) || g.SentAt == nil || g.Attempts != 1 {
				t.Fatalf("delivery %s: status %s, provider id %q, sent at %v, attempts %d", d.ID, g.Status, g.ProviderMessageID, g.SentAt, g.Attempts)
			}
		}
		// A redelivered inbox message (each twice at once, with new ones in the same
		// batches) gets the message already there, not a second one.
		for i := 0; i < 3*n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i >= 2*n {
					if _, err := db.Inbox().Add(ctx, "r1", fmt.Sprintf("new-%d", i), "x", "t", "b"); err != nil {
						t.Error(err)
					}
					return
				}
				id, err := db.Inbox().Add(ctx, "r1", ds[i%n].ID, "x", "t", "again")
				if err != nil || id != inbox[i%n] {
					t.Errorf("inbox message of %s added again: id %d, %v; want %d", ds[i%n].ID, id, err, inbox[i%n])
				}
			}()
		}
		wg.Wait()
		var msgs int
		if err := db.R.QueryRow(`SELECT COUNT(*) FROM herald_inbox`).Scan(&msgs); err != nil || msgs != 2*n {
			t.Fatalf("%d inbox messages (%v), want %d", msgs, err, 2*n)
		}
	})
}

// TestConcurrentRecipientReadsGetTheirOwn: recipient reads of concurrent fan-outs share
// queries; each caller must get its own recipient (contacts decoded) or ErrNotFound.
func TestConcurrentRecipientReadsGetTheirOwn(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		const n = 40
		for i := 0; i < n; i++ {
			r := notify.Recipient{ID: fmt.Sprintf("rc-%02d", i), Locale: "en",
				Contacts: notify.Contacts{Phone: notify.Phone(fmt.Sprintf("+86138001380%02d", i))}}
			if _, err := db.Recipients().Put(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for round := 0; round < 3; round++ {
			for i := 0; i < n+10; i++ { // ten unknown ids
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := fmt.Sprintf("rc-%02d", i)
					r, err := db.Recipients().Get(ctx, id)
					if i >= n {
						if !errors.Is(err, sqlstore.ErrNotFound) {
							t.Errorf("unknown %s: got %v, want ErrNotFound", id, err)
						}
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					if want := fmt.Sprintf("+86138001380%02d", i); r.ID != id || string(r.Contacts.Phone) != want {
						t.Errorf("asked for %s, got %s with phone %s", id, r.ID, r.Contacts.Phone)
					}
				}()
			}
		}
		wg.Wait()
	})
}

// TestPostgresBatchStatementsArePreparedOnce: on PostgreSQL a batched write is one
// statement text whatever its number of rows, so a connection prepares (parses) it
// once and reuses it, instead of preparing a new statement for each batch size.
func TestPostgresBatchStatementsArePreparedOnce(t *testing.T) {
	t.Parallel()
	db, err := sqlstore.Open(context.Background(), testdb.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background(), []string{"sms"}); err != nil {
		t.Fatal(err)
	}
	counts, err := sqlstore.BatchStatements(context.Background(), db, []int{1, 2, 7, 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range counts[1:] {
		if c != counts[0] {
			t.Fatalf("prepared statements after batches of 1, 2, 7, 3 rows: %v; batch %d prepared new ones", counts, i+2)
		}
	}
}

// TestPostgresRecordedDeliveriesAreReadThroughTheEventIndex: the fan-out's insert skips
// deliveries recorded under other ids by probing the event index once per delivery, even
// on a table PostgreSQL has no statistics for (new, or autovacuum off). Asked as
// "event_id = ANY($1)", PostgreSQL estimated half the table to match 100 events and
// read all of it, once per fan-out batch: a loadgen run of 150,000 events fell 88 s
// behind.
func TestPostgresRecordedDeliveriesAreReadThroughTheEventIndex(t *testing.T) {
	t.Parallel()
	db := migratedPostgres(t)
	ctx := context.Background()
	if _, err := db.W.ExecContext(ctx, `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, address,
		status, occurred_at, created_at, updated_at) SELECT 'dlv_' || g, 'e-' || (g / 3), 'x', 'sms', 'normal', '+86138' || g,
		'sent', g, g, g FROM generate_series(1, 30000) AS g`); err != nil {
		t.Fatal(err)
	}
	// 100 events: each one's three recorded deliveries under new ids (to be skipped),
	// one of them under its own id (kept as it is), and one new delivery (inserted).
	var c [8][]string
	var occ []int64
	add := func(id, event, address string) {
		for i, v := range []string{id, event, "x", "sms", "normal", "", address, ""} {
			c[i] = append(c[i], v)
		}
		occ = append(occ, 1)
	}
	for e := 9000; e < 9100; e++ {
		for g := 3 * e; g < 3*e+3; g++ {
			add(fmt.Sprintf("new-%d", g), fmt.Sprintf("e-%d", e), fmt.Sprintf("+86138%d", g))
		}
		add(fmt.Sprintf("dlv_%d", 3*e), fmt.Sprintf("e-%d", e), fmt.Sprintf("+86138%d", 3*e))
		add(fmt.Sprintf("new-%d", e), fmt.Sprintf("e-%d", e), "new@example.com")
	}
	args := []any{c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], occ, "queued", int64(2)}
	plan := queryStrings(t, db.W, "EXPLAIN "+sqlstore.InsertUnrecordedPG, args...)
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Seq Scan on herald_deliveries") || !strings.Contains(text, "herald_deliveries_event") {
		t.Fatalf("recorded deliveries of 100 events are not read through the event index:\n%s", text)
	}
	res, err := db.W.ExecContext(ctx, sqlstore.InsertUnrecordedPG, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 100 {
		t.Fatalf("inserted %d of 500 deliveries, want the 100 new ones", n)
	}
	var recorded int
	if err := db.W.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_deliveries WHERE id LIKE 'new-%' AND address <> 'new@example.com'`).Scan(&recorded); err != nil || recorded != 0 {
		t.Fatalf("deliveries recorded twice, under a new id: %d (%v)", recorded, err)
	}
}
