package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/notify"
)

func eachDB(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	urls := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "h.db") },
		"postgres": func(t *testing.T) string { return testdb.Postgres(t) },
		"mysql":    func(t *testing.T) string { return testdb.MySQL(t) },
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sqlstore.OpenWith(context.Background(), url(t), sqlstore.Options{MaxConns: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			if err := db.Migrate(context.Background(), []string{"sms"}); err != nil {
				t.Fatal(err)
			}
			fn(t, db)
		})
	}
}

// Many workers race for one delivery: exactly one holds the lease at a time, and once
// it is sent nobody claims it again.
func TestClaimIsExclusive(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := db.Deliveries()
		id := notify.DeliveryID("e1", time.Now(), notify.ChannelSMS, "+8613800138000")
		if err := s.InsertQueued(ctx, db.W, []notify.Delivery{{ID: id, EventID: "e1", EventType: "x", Channel: notify.ChannelSMS,
			Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		states := map[sqlstore.ClaimState]int{}
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := s.Claim(ctx, id, "w"+string(rune('a'+i)), time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				states[c.State]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if states[sqlstore.Claimed] != 1 || states[sqlstore.ClaimBusy] != 7 {
			t.Fatalf("claims: %v, want one claimed and seven busy", states)
		}
		// Only the owner can release.
		if err := s.Release(ctx, id, "intruder", "x", true); err != nil {
			t.Fatal(err)
		}
		if d, _ := s.Get(ctx, id); d.Status != notify.StatusSending {
			t.Fatalf("released by a non-owner: %+v", d)
		}
		if err := s.MarkSent(ctx, id, notify.Receipt{Provider: "p"}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Claim(ctx, id, "late", time.Minute); err != nil || c.State != sqlstore.ClaimDone {
			t.Fatalf("claim after sent: %+v %v", c, err)
		}
		if _, err := s.Claim(ctx, "dlv_unknown", "w", time.Minute); err == nil {
			t.Fatal("claiming an unknown delivery must fail")
		}
	})
}

func TestDelayedMovesDueMessagesOnce(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		d := db.Delayed()
		topic := sqlstore.DeliveryTopic("sms", notify.LaneNormal)
		due := message.NewMessage("m-due", []byte(`{"x":1}`))
		due.Metadata.Set("delivery_id", "dlv_1")
		if err := d.Add(ctx, topic, due, time.Now().Add(-time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if err := d.Add(ctx, topic, message.NewMessage("m-later", []byte(`{}`)), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		n, err := d.MoveDue(ctx, 100, nil)
		if err != nil || n != 1 {
			t.Fatalf("moved %d (%v), want 1", n, err)
		}
		if n, err := d.MoveDue(ctx, 100, nil); err != nil || n != 0 {
			t.Fatalf("second move %d (%v), want 0", n, err)
		}
		if left, _ := d.Count(ctx); left != 1 {
			t.Fatalf("%d parked, want 1", left)
		}
		var uuid string
		var rows int
		q := db.Rebind(`SELECT uuid, (SELECT COUNT(*) FROM ` + quote(db, sqlstore.TopicTable(topic)) + `) FROM ` +
			quote(db, sqlstore.TopicTable(topic)) + ` LIMIT 1`)
		if err := db.R.QueryRow(q).Scan(&uuid, &rows); err != nil || uuid != "m-due" || rows != 1 {
			t.Fatalf("topic holds %d rows, first %q (%v)", rows, uuid, err)
		}
	})
}

func TestRecipientWindowsCount(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := db.RecipientWindows()
		start := time.Now().Truncate(time.Hour)
		for i := 1; i <= 3; i++ {
			n, err := w.Incr(ctx, "+8613800138000", start)
			if err != nil || n != i {
				t.Fatalf("incr %d: %d %v", i, n, err)
			}
		}
		if n, err := w.Incr(ctx, "+8613800138000", start.Add(time.Hour)); err != nil || n != 1 {
			t.Fatalf("next window: %d %v", n, err)
		}
		if err := w.Prune(ctx, start.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if n, err := w.Incr(ctx, "+8613800138000", start); err != nil || n != 1 {
			t.Fatalf("after prune: %d %v", n, err)
		}
	})
}

func quote(db *sqlstore.DB, table string) string {
	if db.Dialect == sqlstore.MySQL {
		return "`" + table + "`"
	}
	return `"` + table + `"`
}

// TestLatenciesSince: the latencies of sent deliveries (sent_at - occurred_at, and
// created_at - occurred_at to their record), those of events that occurred before since
// left out (loadgen's warm-up).
func TestLatenciesSince(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		var ds []notify.Delivery
		for i, occ := range []time.Time{t0, t0.Add(10 * time.Second), t0.Add(20 * time.Second), t0.Add(30 * time.Second)} {
			ds = append(ds, notify.Delivery{ID: fmt.Sprintf("ls-%d", i), EventID: fmt.Sprintf("lat-%d", i), EventType: "x",
				Channel: notify.ChannelSMS, Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: occ})
		}
		before := time.Now()
		if err := db.Deliveries().InsertQueued(ctx, db.W, ds); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		for i, d := range ds[:3] { // the last one is never sent
			if err := db.Deliveries().MarkSent(ctx, d.ID, notify.Receipt{Provider: "p"}, d.OccurredAt.Add(time.Duration(i+1)*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			since time.Time
			want  string
		}{
			{time.Time{}, "[1000 2000 3000]"},
			{t0.Add(10 * time.Second), "[2000 3000]"},
			{t0.Add(10*time.Second + time.Microsecond), "[3000]"},
			{t0.Add(25 * time.Second), "[]"},
		} {
			var got []int64
			err := db.Deliveries().Latencies(ctx, "lat-", c.since, func(l sqlstore.DeliveryLatency) {
				// The record's latency is the delivery's created_at (the insert above)
				// less its event's time; the i-th delivery was sent i+1 ms after it.
				occ := ds[l.Sent/1000-1].OccurredAt
				if l.Channel != notify.ChannelSMS || l.Record < before.Sub(occ).Microseconds()-1 || l.Record > after.Sub(occ).Microseconds()+1 {
					t.Errorf("latency %+v: want channel sms, recorded %d–%d µs after the event", l,
						before.Sub(occ).Microseconds(), after.Sub(occ).Microseconds())
				}
				got = append(got, l.Sent)
			})
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			if fmt.Sprint(got) != c.want {
				t.Fatalf("since %v: latencies %v µs, want %s", c.since, got, c.want)
			}
		}
	})
}

// A delivery recorded under an id made before ids sorted by time is not recorded again
// when its event is fanned out anew (a redelivery after an upgrade gets the new id),
// and IDFor finds it by event, channel and address.
func TestFanOutKeepsDeliveriesRecordedUnderEarlierIDs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		at := time.Now()
		d := notify.Delivery{ID: "dlv_0123456789abcdef0123456789abcdef", EventID: "e-up", EventType: "x", Channel: notify.ChannelSMS,
			Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: at}
		// Recorded as every version of Herald records a delivery: with its event's
		// notification.
		n := sqlstore.Notification{ID: "e-up", Type: "x", OccurredAt: at, Status: sqlstore.NotificationFannedOut}
		if err := db.CommitFanOut(ctx, sqlstore.FanOut{Notification: n, Deliveries: []notify.Delivery{d}}); err != nil {
			t.Fatal(err)
		}
		again := d
		again.ID = notify.DeliveryID(d.EventID, at, d.Channel, string(d.Address))
		other := again
		other.EventID, other.ID = "e-new", notify.DeliveryID("e-new", at, d.Channel, string(d.Address))
		// One fan-out with a new event's notification (e-new), its delivery and the
		// redelivered one of the event recorded before.
		n.ID = "e-new"
		if err := db.CommitFanOut(ctx, sqlstore.FanOut{Notification: n, Deliveries: []notify.Delivery{again, other}}); err != nil {
			t.Fatal(err)
		}
		for event, want := range map[string]string{"e-up": d.ID, "e-new": other.ID} {
			ds, err := db.Deliveries().ByEvent(ctx, event)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].ID != want {
				t.Fatalf("deliveries of %s: %+v, want one, %s", event, ds, want)
			}
			id, err := db.Deliveries().IDFor(ctx, event, notify.ChannelSMS, "+8613800138000")
			if err != nil || id != want {
				t.Fatalf("IDFor(%s) = %q, %v; want %s", event, id, err, want)
			}
		}
		if _, err := db.Deliveries().IDFor(ctx, "e-up", notify.ChannelEmail, "+8613800138000"); !errors.Is(err, sqlstore.ErrNotFound) {
			t.Fatalf("IDFor of no delivery: %v, want ErrNotFound", err)
		}
	})
}

// A write of a group transaction that fails fails only itself: the group is run again
// one write at a time, and the others get what they would have got alone. On
// PostgreSQL the group is one pipeline, and a claim that finds its row taken by the same
// group, or no row, learns it from a read after the commit.
func TestGroupFailureFailsOnlyItsWrite(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		insertQueued(t, db, "g", 3)
		for _, single := range []bool{false, true} {
			writes := []sqlstore.GroupWrite{
				{ClaimID: "g0", Owner: "o"},
				{ClaimID: "g0", Owner: "o"}, // the same row again: taken by the first
				{ClaimID: "nope", Owner: "o"},
				{Exec: "UPDATE herald_deliveries SET no_such_column = 1"},
				{ClaimID: "g1", Owner: "o"},
				{Exec: "UPDATE herald_deliveries SET last_error = 'marked' WHERE id = 'g2'"},
			}
			if single { // the same group without the failing write: committed as one
				writes = append(writes[:3], writes[4:]...)
				if _, err := db.W.ExecContext(ctx, `UPDATE herald_deliveries SET status = 'queued', lease_owner = '', lease_until = 0, last_error = ''`); err != nil {
					t.Fatal(err)
				}
			}
			got := sqlstore.CommitGroup(db, writes)
			want := []struct {
				state sqlstore.ClaimState
				err   string
			}{{state: sqlstore.Claimed}, {state: sqlstore.ClaimBusy}, {err: sqlstore.ErrNotFound.Error()}, {err: "no_such_column"},
				{state: sqlstore.Claimed}, {}}
			if single {
				want = append(want[:3], want[4:]...)
			}
			for i, w := range want {
				g := got[i]
				switch {
				case w.err != "":
					if g.Err == nil || !strings.Contains(g.Err.Error(), w.err) {
						t.Errorf("single=%v write %d: error %v, want one naming %q", single, i, g.Err, w.err)
					}
				case g.Err != nil:
					t.Errorf("single=%v write %d: %v", single, i, g.Err)
				case writes[i].Exec == "" && g.Claim.State != w.state:
					t.Errorf("single=%v write %d (claim of %s): state %v, want %v", single, i, writes[i].ClaimID, g.Claim.State, w.state)
				}
			}
			for id, want := range map[string]string{"g0": "sending", "g1": "sending", "g2": "queued"} {
				d, err := db.Deliveries().Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if string(d.Status) != want {
					t.Errorf("single=%v: %s is %s, want %s", single, id, d.Status, want)
				}
				if id == "g2" && d.LastError != "marked" {
					t.Errorf("single=%v: the good write of the group was not committed: last_error %q", single, d.LastError)
				}
			}
		}
	})
}

// On MySQL a group transaction without fan-outs is one query: START TRANSACTION, the
// writes (a claim's UPDATE and the SELECT of its rows, the sandbox sends' INSERT, a
// statement) and COMMIT, sent as one text. Through database/sql
// this group took eight round trips. Each write still gets its own result. A group
// with a fan-out is two queries.
func TestMySQLGroupIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	db, url := openMySQL(t)
	ctx := context.Background()
	if err := db.Migrate(ctx, []string{"sms"}); err != nil {
		t.Fatal(err)
	}
	insertQueued(t, db, "r", 4)
	packets, err := sqlstore.CountMySQLGroupPackets(db, url)
	if err != nil {
		t.Fatal(err)
	}
	// The first group opens the connection (its handshake is counted too).
	if got := sqlstore.CommitGroup(db, []sqlstore.GroupWrite{{ClaimID: "r0", Owner: "o"}}); got[0].Err != nil || got[0].Claim.State != sqlstore.Claimed {
		t.Fatalf("first claim: %+v", got[0])
	}
	packets.Store(0)
	got := sqlstore.CommitGroup(db, []sqlstore.GroupWrite{
		{ClaimID: "r1", Owner: "o"},
		{ClaimID: "r0", Owner: "o"}, // leased by the first group
		{ClaimID: "r2", Owner: "o"},
		{Sandbox: "r1"},
		{Sandbox: "r2"},
		{Exec: "UPDATE herald_deliveries SET last_error = 'marked' WHERE id = 'r3'"},
	})
	if n := packets.Load(); n != 1 {
		t.Errorf("the group sent %d queries, want 1", n)
	}
	for i, want := range []sqlstore.ClaimState{sqlstore.Claimed, sqlstore.ClaimBusy, sqlstore.Claimed} {
		if got[i].Err != nil || got[i].Claim.State != want {
			t.Errorf("claim %d: %+v, want state %v", i, got[i], want)
		}
	}
	for i, id := range map[int]string{3: "r1", 4: "r2"} {
		if n, err := db.SandboxSends().Count(ctx, id); got[i].Err != nil || err != nil || n != 1 {
			t.Errorf("sandbox send of %s: %+v, recorded %d times (%v)", id, got[i], n, err)
		}
	}
	d, err := db.Deliveries().Get(ctx, "r3")
	if err != nil {
		t.Fatal(err)
	}
	if d.LastError != "marked" {
		t.Errorf("the statement of the group was not committed: last_error %q", d.LastError)
	}

	// A fan-out reads the deliveries recorded under other ids first: two queries.
	packets.Store(0)
	got = sqlstore.CommitGroup(db, []sqlstore.GroupWrite{{FanOut: "f1"}, {ClaimID: "r3", Owner: "o"}})
	if n := packets.Load(); n != 2 {
		t.Errorf("the group with a fan-out sent %d queries, want 2", n)
	}
	if got[0].Err != nil || got[1].Err != nil || got[1].Claim.State != sqlstore.Claimed {
		t.Errorf("fan-out and claim: %+v", got)
	}
	if d, err := db.Deliveries().Get(ctx, "f1"); err != nil || d.Status != notify.StatusQueued {
		t.Errorf("the fan-out's delivery: %+v, %v", d, err)
	}
	var published int
	table := "`" + sqlstore.TopicTable(sqlstore.DeliveryTopic("sms", notify.LaneNormal)) + "`"
	if err := db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE uuid = 'f1'").Scan(&published); err != nil || published != 1 {
		t.Errorf("the fan-out's message: %d rows (%v), want 1", published, err)
	}
}

// insertQueued records n queued SMS deliveries of event e1, with ids prefix0, prefix1, ….
func insertQueued(t *testing.T, db *sqlstore.DB, prefix string, n int) {
	t.Helper()
	var ds []notify.Delivery
	for i := range n {
		ds = append(ds, notify.Delivery{ID: fmt.Sprintf("%s%d", prefix, i), EventID: "e1", EventType: "x", Channel: notify.ChannelSMS,
			Lane: notify.LaneNormal, Address: notify.Address(fmt.Sprintf("+861380013800%d", i)), OccurredAt: time.Now()})
	}
	if err := db.Deliveries().InsertQueued(context.Background(), db.W, ds); err != nil {
		t.Fatal(err)
	}
}
