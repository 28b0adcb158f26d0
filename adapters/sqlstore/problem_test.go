package sqlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// queue records deliveries of event ev, queued, one per address.
func queue(t *testing.T, db *sqlstore.DB, ev string, addrs ...string) []string {
	t.Helper()
	var ds []notify.Delivery
	var ids []string
	for _, a := range addrs {
		id := notify.DeliveryID(ev, time.Now(), notify.ChannelSMS, a)
		ds = append(ds, notify.Delivery{ID: id, EventID: ev, EventType: "x", Channel: notify.ChannelSMS,
			Lane: notify.LaneNormal, Address: notify.Address(a), OccurredAt: time.Now()})
		ids = append(ids, id)
	}
	if err := db.Deliveries().InsertQueued(context.Background(), db.W, ds); err != nil {
		t.Fatal(err)
	}
	return ids
}

// send claims delivery id and records its send with receipt r.
func send(t *testing.T, db *sqlstore.DB, id string, r notify.Receipt) {
	t.Helper()
	ctx := context.Background()
	if c, err := db.Deliveries().Claim(ctx, id, "w", time.Minute); err != nil || c.State != sqlstore.Claimed {
		t.Fatalf("claim of %s: %+v %v", id, c, err)
	}
	if err := db.Deliveries().MarkSent(ctx, id, r, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// listAll follows List's cursors for status st and returns the ids, and the pages' sizes.
func listAll(t *testing.T, db *sqlstore.DB, st notify.Status, limit int) (ids []string, pages []int) {
	t.Helper()
	cursor := ""
	for range 1000 {
		ds, next, err := db.Deliveries().List(context.Background(), sqlstore.DeliveryFilter{Status: st, Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) > limit {
			t.Fatalf("a page of %d deliveries, limit %d", len(ds), limit)
		}
		for _, d := range ds {
			if d.Status != st {
				t.Fatalf("listing %s: delivery %s is %s", st, d.ID, d.Status)
			}
			ids = append(ids, d.ID)
		}
		pages = append(pages, len(ds))
		if next == "" {
			return ids, pages
		}
		cursor = next
	}
	t.Fatal("the cursors did not end")
	return nil, nil
}

// Every way a delivery's status changes keeps the problem column in step, and the
// listing by status finds each delivery under its status.
func TestProblemFollowsStatus(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := db.Deliveries()
		ids := queue(t, db, "ev-problem", "+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004",
			"+8613800000005", "+8613800000006", "+8613800000007")
		sent, failed, expired, poisoned, undelivered, redelivered, queued := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]
		for i, id := range []string{sent, undelivered, redelivered} {
			send(t, db, id, notify.Receipt{Provider: "gw", ProviderMessageID: fmt.Sprintf("m%d", i), Reports: true})
		}
		for id, st := range map[string]notify.Status{failed: notify.StatusFailed, expired: notify.StatusExpired, poisoned: notify.StatusPoisoned} {
			if err := s.MarkEnded(ctx, id, st, "because"); err != nil {
				t.Fatal(err)
			}
		}
		// A report by message id, another by reference; then the second is delivered after all.
		for _, r := range []notify.Report{{MessageID: "m1", Reason: "absent"}, {Reference: redelivered, Reason: "absent"},
			{Reference: redelivered, Delivered: true}} {
			if ok, err := s.RecordReport(ctx, "gw", r); err != nil || !ok {
				t.Fatalf("report %+v: %v %v", r, ok, err)
			}
		}
		want := map[notify.Status][]string{
			notify.StatusSent: {sent}, notify.StatusFailed: {failed}, notify.StatusExpired: {expired},
			notify.StatusPoisoned: {poisoned}, notify.StatusUndelivered: {undelivered}, notify.StatusDelivered: {redelivered},
			notify.StatusQueued: {queued}, notify.StatusSending: nil,
		}
		check := func(when string) {
			t.Helper()
			rows, err := db.R.QueryContext(ctx, `SELECT status, problem FROM herald_deliveries`)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var st, problem string
				if err := rows.Scan(&st, &problem); err != nil {
					t.Fatal(err)
				}
				isProblem := slices.Contains([]notify.Status{notify.StatusFailed, notify.StatusExpired, notify.StatusPoisoned,
					notify.StatusUndelivered}, notify.Status(st))
				if (isProblem && problem != st) || (!isProblem && problem != "") {
					t.Errorf("%s: a %s delivery has problem %q", when, st, problem)
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			for st, ids := range want {
				got, _ := listAll(t, db, st, 2)
				slices.Sort(got)
				slices.Sort(ids)
				if !slices.Equal(got, ids) {
					t.Errorf("%s: listing %s found %v, want %v", when, st, got, ids)
				}
			}
		}
		check("after the changes")

		// A replay of the poisoned message queues the delivery again.
		if err := db.Poison().Add(ctx, sqlstore.PoisonEntry{MessageUUID: "u1", Topic: sqlstore.DeliveryTopic("sms", notify.LaneNormal),
			Reason: "x", Payload: json.RawMessage(`{}`), Metadata: map[string]string{"delivery_id": poisoned}}); err != nil {
			t.Fatal(err)
		}
		es, _, err := db.Poison().List(ctx, "", "", 10)
		if err != nil || len(es) != 1 {
			t.Fatalf("poison: %v %v", es, err)
		}
		if _, err := db.Poison().Replay(ctx, es[0].ID); err != nil {
			t.Fatal(err)
		}
		want[notify.StatusPoisoned], want[notify.StatusQueued] = nil, []string{queued, poisoned}
		check("after the replay")
	})
}

// On PostgreSQL a page of an in-flight status reads a bounded number of deliveries:
// pages may come back short, even empty, but following the cursors finds every
// delivery in the status once.
func TestListInFlightFollowsCursors(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		sqlstore.SetInFlightScan(db, 7)
		var addrs []string
		for i := range 40 {
			addrs = append(addrs, fmt.Sprintf("+86138%08d", i))
		}
		ids := queue(t, db, "ev-walk", addrs...)
		var wantQueued []string
		for i, id := range ids {
			if i%9 == 4 {
				wantQueued = append(wantQueued, id)
				continue
			}
			if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_deliveries SET status = 'sent' WHERE id = ?`), id); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(wantQueued)
		for _, limit := range []int{1, 2, 50} {
			got, pages := listAll(t, db, notify.StatusQueued, limit)
			slices.Sort(got)
			if !slices.Equal(got, wantQueued) {
				t.Errorf("limit %d: listed %v, want %v", limit, got, wantQueued)
			}
			if db.Dialect == sqlstore.Postgres && limit == 50 && len(pages) < (40+6)/7 {
				t.Errorf("limit %d: %d pages (%v): the walk was not bounded", limit, len(pages), pages)
			}
		}
	})
}

// On PostgreSQL the claim and the sent update write no indexed column, and a row's
// page has room for its new versions: both are heap-only (HOT) updates.
func TestDeliveryUpdatesAreHeapOnly(t *testing.T) {
	t.Parallel()
	db := migratedPostgres(t)
	ctx := context.Background()
	if opts := storageOptions(t, db); opts != "fillfactor=50" {
		t.Fatalf("storage options %q, want fillfactor=50", opts)
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	var ds []notify.Delivery
	var ids, provs, pmids []string
	var ats []int64
	for i := range 5 {
		a := notify.Address(fmt.Sprintf("+861380000%04d", i))
		d := notify.Delivery{ID: notify.DeliveryID("ev-hot", time.Now(), notify.ChannelSMS, string(a)), EventID: "ev-hot",
			EventType: "x", Channel: notify.ChannelSMS, Lane: notify.LaneNormal, Address: a, OccurredAt: time.Now()}
		ds = append(ds, d)
		ids, provs, pmids, ats = append(ids, d.ID), append(provs, "gw"), append(pmids, fmt.Sprintf("m%d", i)), append(ats, time.Now().UnixMicro())
	}
	if err := db.Deliveries().InsertQueued(ctx, tx, ds); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMicro()
	res, err := tx.ExecContext(ctx, sqlstore.ClaimUpdatePG, "sending", "w", now+60e6, now, ids, "queued", "sending", now)
	if n, _ := res.RowsAffected(); err != nil || n != 5 {
		t.Fatalf("claim: %d rows, %v", n, err)
	}
	res, err = tx.ExecContext(ctx, sqlstore.SentUpdatePG, "sent", now, ids, provs, pmids, ats)
	if n, _ := res.RowsAffected(); err != nil || n != 5 {
		t.Fatalf("sent: %d rows, %v", n, err)
	}
	var upd, hot int
	if err := tx.QueryRowContext(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables
		WHERE relid = 'herald_deliveries'::regclass`).Scan(&upd, &hot); err != nil {
		t.Fatal(err)
	}
	if upd != 10 || hot != 10 {
		var defs string
		_ = tx.QueryRowContext(ctx, `SELECT string_agg(indexdef, E'\n') FROM pg_indexes
			WHERE tablename = 'herald_deliveries' AND schemaname = current_schema()`).Scan(&defs)
		t.Fatalf("%d of %d updates were HOT, want 10 of 10; indexes:\n%s", hot, upd, defs)
	}
}

// A database made before the problem column: Migrate adds it, gives the deliveries
// already there their problem, and on PostgreSQL drops the status index and sets the
// fillfactor. A second Migrate changes nothing.
func TestMigrateAddsProblem(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		old := []string{`ALTER TABLE herald_deliveries DROP COLUMN problem`}
		if db.Dialect == sqlstore.Postgres {
			old = append(old, `CREATE INDEX herald_deliveries_status ON herald_deliveries (status, created_at, id)`,
				`ALTER TABLE herald_deliveries RESET (fillfactor)`)
		}
		for _, q := range old {
			if _, err := db.W.ExecContext(ctx, q); err != nil {
				t.Fatal(q, err)
			}
		}
		ids := queue(t, db, "ev-old", "+8613800000001", "+8613800000002", "+8613800000003")
		for i, st := range []string{"failed", "sent", "undelivered"} {
			if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_deliveries SET status = ? WHERE id = ?`), st, ids[i]); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if err := db.Migrate(ctx, []string{"sms"}); err != nil {
				t.Fatal(err)
			}
		}
		for i, want := range []string{"failed", "", "undelivered"} {
			var got string
			if err := db.R.QueryRowContext(ctx, db.Rebind(`SELECT problem FROM herald_deliveries WHERE id = ?`), ids[i]).Scan(&got); err != nil || got != want {
				t.Errorf("delivery %d: problem %q (%v), want %q", i, got, err, want)
			}
		}
		if got, _ := listAll(t, db, notify.StatusFailed, 10); !slices.Equal(got, ids[:1]) {
			t.Errorf("listing failed: %v", got)
		}
		if db.Dialect != sqlstore.Postgres {
			return
		}
		var indexes, opts string
		if err := db.R.QueryRowContext(ctx, `SELECT string_agg(indexname, ',' ORDER BY indexname),
			(SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'herald_deliveries'::regclass)
			FROM pg_indexes WHERE tablename = 'herald_deliveries' AND schemaname = current_schema()`).Scan(&indexes, &opts); err != nil {
			t.Fatal(err)
		}
		if indexes != "herald_deliveries_event,herald_deliveries_page,herald_deliveries_pkey,herald_deliveries_problem" || opts != "fillfactor=50" {
			t.Errorf("indexes %s, storage options %q", indexes, opts)
		}
	})
}

// Migrate gives a table made with the fillfactor Herald set before (70) the current
// one, and keeps a value an operator chose.
func TestMigrateFillfactor(t *testing.T) {
	t.Parallel()
	db := migratedPostgres(t)
	ctx := context.Background()
	for _, c := range []struct{ set, want string }{{"70", "fillfactor=50"}, {"80", "fillfactor=80"}, {"50", "fillfactor=50"}} {
		if _, err := db.W.ExecContext(ctx, `ALTER TABLE herald_deliveries SET (fillfactor = `+c.set+`)`); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, []string{"sms"}); err != nil {
			t.Fatal(err)
		}
		if opts := storageOptions(t, db); opts != c.want {
			t.Errorf("fillfactor %s, migrated: %q, want %q", c.set, opts, c.want)
		}
	}
}

// storageOptions are herald_deliveries' storage options on PostgreSQL ("fillfactor=50").
func storageOptions(t *testing.T, db *sqlstore.DB) string {
	t.Helper()
	var opts string
	if err := db.R.QueryRowContext(context.Background(), `SELECT array_to_string(reloptions, ',') FROM pg_class
		WHERE oid = 'herald_deliveries'::regclass`).Scan(&opts); err != nil {
		t.Fatal(err)
	}
	return opts
}

// A delivery report names its delivery by reference or by the provider's message id,
// which MarkSent keeps when the provider reports (Receipt.Reports): a reused id finds
// its latest send, and another provider's id finds nothing.
func TestReportsFindTheirDelivery(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := db.Deliveries()
		ids := queue(t, db, "ev-report", "+8613800000001", "+8613800000002", "+8613800000003")
		receipts := []notify.Receipt{
			{Provider: "smsc", ProviderMessageID: "M1", Reports: true},
			{Provider: "smsc", ProviderMessageID: "M1", Reports: true}, // the SMSC reused the id
			{Provider: "smsc", ProviderMessageID: "M3"},                // a provider that does not report
		}
		for i, id := range ids {
			send(t, db, id, receipts[i])
		}
		for _, c := range []struct {
			provider string
			r        notify.Report
			found    bool
		}{
			{"other", notify.Report{MessageID: "M1", Delivered: true}, false},
			{"smsc", notify.Report{MessageID: "M1", Delivered: true}, true},
			{"smsc", notify.Report{MessageID: "M3", Delivered: true}, false},
			{"smsc", notify.Report{Reference: ids[2], Delivered: true}, true},
			{"smsc", notify.Report{Reference: "dlv-unknown", MessageID: "M1", Reason: "expired"}, true},
			{"smsc", notify.Report{MessageID: "M9", Delivered: true}, false},
		} {
			if found, err := s.RecordReport(ctx, c.provider, c.r); err != nil || found != c.found {
				t.Errorf("report %s %+v: found %v (%v), want %v", c.provider, c.r, found, err, c.found)
			}
		}
		for i, want := range []notify.Status{notify.StatusSent, notify.StatusUndelivered, notify.StatusDelivered} {
			if d, err := s.Get(ctx, ids[i]); err != nil || d.Status != want {
				t.Errorf("delivery %d: %s (%v), want %s", i, d.Status, err, want)
			}
		}
	})
}

// A database made before the provider message ids were kept: Migrate keeps the ids of
// the last week's deliveries still waiting for a report, so that their reports find them.
func TestMigrateKeepsMessageIDs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		if _, err := db.W.ExecContext(ctx, `DROP TABLE herald_message_ids`); err != nil {
			t.Fatal(err)
		}
		ids := queue(t, db, "ev-before", "+8613800000001", "+8613800000002", "+8613800000003")
		sentAt := []int64{time.Now().UnixMicro(), time.Now().UnixMicro(), time.Now().Add(-8 * 24 * time.Hour).UnixMicro()}
		for i, id := range ids {
			if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_deliveries SET status = 'sent', provider = 'smsc',
				provider_message_id = ?, sent_at = ? WHERE id = ?`), fmt.Sprintf("M%d", i), sentAt[i], id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_deliveries SET status = 'delivered' WHERE id = ?`), ids[1]); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := db.Migrate(ctx, []string{"sms"}); err != nil {
				t.Fatal(err)
			}
		}
		var kept int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_message_ids`).Scan(&kept); err != nil || kept != 1 {
			t.Fatalf("%d ids kept (%v), want the one sent delivery of the last week", kept, err)
		}
		if found, err := db.Deliveries().RecordReport(ctx, "smsc", notify.Report{MessageID: "M0", Delivered: true}); err != nil || !found {
			t.Fatalf("report of a delivery sent before: found %v (%v)", found, err)
		}
	})
}

// A report by message id that comes before the send's record (an SMSC rejecting at
// once) is kept, and applied when the send is recorded; one received more than a
// minute before the send is not (an earlier message under a reused id), and one older
// than ten minutes is deleted.
func TestEarlyReportWaitsForItsSend(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := db.Deliveries()
		report := func(r notify.Report) {
			t.Helper()
			if found, err := s.RecordReport(ctx, "smsc", r); err != nil || found {
				t.Fatalf("early report %+v: found %v (%v)", r, found, err)
			}
		}
		for _, r := range []notify.Report{{MessageID: "E1", Reason: "absent subscriber"}, {MessageID: "E2", Delivered: true},
			{MessageID: "E3", Reason: "stale"}, {MessageID: "E5", Reason: "old"}} {
			report(r)
		}
		for id, age := range map[string]time.Duration{"E3": 2 * time.Minute, "E5": 11 * time.Minute} {
			if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_early_reports SET received_at = ? WHERE message_id = ?`),
				time.Now().Add(-age).UnixMicro(), id); err != nil {
				t.Fatal(err)
			}
		}
		report(notify.Report{MessageID: "E6", Delivered: true}) // deletes E5
		ids := queue(t, db, "ev-early", "+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004")
		pmids := []string{"E1", "E2", "E3", "E4"}
		for i, id := range ids {
			send(t, db, id, notify.Receipt{Provider: "smsc", ProviderMessageID: pmids[i], Reports: true})
		}
		want := []notify.Status{notify.StatusUndelivered, notify.StatusDelivered, notify.StatusSent, notify.StatusSent}
		for i, id := range ids {
			d, err := s.Get(ctx, id)
			if err != nil || d.Status != want[i] {
				t.Errorf("delivery %s: %s (%v), want %s", pmids[i], d.Status, err, want[i])
			}
			if i == 0 && d.LastError != "absent subscriber" {
				t.Errorf("delivery E1: last error %q", d.LastError)
			}
		}
		var first, last string
		var n int
		if err := db.R.QueryRowContext(ctx, `SELECT MIN(message_id), MAX(message_id), COUNT(*) FROM herald_early_reports`).Scan(
			&first, &last, &n); err != nil || first != "E3" || last != "E6" || n != 2 {
			t.Errorf("early reports left: %s..%s, %d (%v), want E3 and E6", first, last, n, err)
		}
	})
}

// TestEarlyReportByReference: a gateway's report naming only the delivery id, received
// before the send's record committed, is kept and applied when the send is recorded,
// whether the gateway answered with a message id of its own or not; one received long
// before the send is not.
func TestEarlyReportByReference(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := db.Deliveries()
		ids := queue(t, db, "ev-early-ref", "+8613800000001", "+8613800000002", "+8613800000003")
		for i, r := range []notify.Report{{Reference: ids[0], Reason: "absent subscriber"}, {Reference: ids[1], Delivered: true},
			{Reference: ids[2], Delivered: true}} {
			if found, err := s.RecordReport(ctx, "gw", r); err != nil || found {
				t.Fatalf("early report %d: found %v (%v)", i, found, err)
			}
		}
		if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_early_reports SET received_at = ? WHERE message_id LIKE ?`),
			time.Now().Add(-2*time.Minute).UnixMicro(), "%"+ids[2]); err != nil {
			t.Fatal(err)
		}
		send(t, db, ids[0], notify.Receipt{Provider: "gw", Reports: true})
		send(t, db, ids[1], notify.Receipt{Provider: "gw", ProviderMessageID: "G2", Reports: true})
		send(t, db, ids[2], notify.Receipt{Provider: "gw", Reports: true})
		for i, want := range []notify.Status{notify.StatusUndelivered, notify.StatusDelivered, notify.StatusSent} {
			d, err := s.Get(ctx, ids[i])
			if err != nil || d.Status != want {
				t.Errorf("delivery %d: %s (%v), want %s", i, d.Status, err, want)
			}
			if i == 0 && d.LastError != "absent subscriber" {
				t.Errorf("delivery 0: last error %q", d.LastError)
			}
		}
		var n int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_early_reports`).Scan(&n); err != nil || n != 1 {
			t.Errorf("early reports left: %d (%v), want the stale one", n, err)
		}
	})
}
