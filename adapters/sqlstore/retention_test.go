package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// TestPruneRecords: records older than the retention go when every delivery of their
// notification has ended (with their sandbox sends), and so do old notifications
// without deliveries and old idempotency keys; a notification with a delivery still
// queued is kept whole, as are newer records and inbox messages.
func TestPruneRecords(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		old := time.Now().Add(-2 * time.Hour).UnixMicro()
		notes := map[string][]notify.Status{
			"old-ended":   {notify.StatusSent, notify.StatusFailed, notify.StatusDelivered},
			"old-pending": {notify.StatusSent, notify.StatusQueued},
			"old-none":    nil,
			"new-ended":   {notify.StatusSent},
		}
		for id, statuses := range notes {
			var ds []notify.Delivery
			for i := range statuses {
				ds = append(ds, notify.Delivery{ID: fmt.Sprintf("%s-%d", id, i), EventID: id, EventType: "x",
					Channel: notify.ChannelSMS, Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: time.Now()})
			}
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				if err := db.Notifications().Record(ctx, tx, []sqlstore.NotificationRecord{{Notification: sqlstore.Notification{
					ID: id, Type: "x", Status: "fanned_out", OccurredAt: time.Now()}, Deliveries: len(ds)}}); err != nil {
					return err
				}
				if err := db.Deliveries().InsertQueued(ctx, tx, ds); err != nil {
					return err
				}
				_, _, err := db.Notifications().ClaimIdempotencyKey(ctx, tx, "key-"+id, id)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range statuses {
				d := ds[i].ID
				if err := db.SandboxSends().Add(ctx, sqlstore.SandboxSend{DeliveryID: d, Channel: "sms", Address: "x", AcceptedAt: time.Now()}); err != nil {
					t.Fatal(err)
				}
				if _, err := db.Inbox().Add(ctx, "r1", d, "x", "t", "b"); err != nil {
					t.Fatal(err)
				}
				if _, err := db.W.ExecContext(ctx, db.Rebind(`INSERT INTO herald_message_ids (provider, message_id, delivery_id)
					VALUES ('smsc', ?, ?)`), "m-"+d, d); err != nil {
					t.Fatal(err)
				}
				if _, err := db.W.ExecContext(ctx, db.Rebind(`UPDATE herald_deliveries SET status = ? WHERE id = ?`), string(st), d); err != nil {
					t.Fatal(err)
				}
			}
			if id[:3] == "old" {
				for _, q := range []string{`UPDATE herald_notifications SET created_at = ? WHERE id = ?`,
					`UPDATE herald_deliveries SET created_at = ? WHERE event_id = ?`,
					`UPDATE herald_idempotency_keys SET created_at = ? WHERE notification_id = ?`} {
					if _, err := db.W.ExecContext(ctx, db.Rebind(q), old, id); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		p, err := db.PruneRecords(ctx, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if want := (sqlstore.PrunedRecords{Notifications: 2, Deliveries: 3, SandboxSends: 3, IdempotencyKeys: 3}); p != want {
			t.Fatalf("pruned %+v, want %+v", p, want)
		}
		for id, statuses := range notes {
			_, err := db.Notifications().Get(ctx, id)
			gone := errors.Is(err, sqlstore.ErrNotFound)
			if err != nil && !gone {
				t.Fatal(err)
			}
			if want := id == "old-ended" || id == "old-none"; gone != want {
				t.Fatalf("notification %s: gone %v, want %v", id, gone, want)
			}
			for i := range statuses {
				_, err := db.Deliveries().Get(ctx, fmt.Sprintf("%s-%d", id, i))
				if errors.Is(err, sqlstore.ErrNotFound) != gone {
					t.Fatalf("delivery %s-%d: %v, its notification gone: %v", id, i, err, gone)
				}
			}
		}
		var inbox int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_inbox`).Scan(&inbox); err != nil || inbox != 6 {
			t.Fatalf("%d inbox messages (%v), want all 6 kept", inbox, err)
		}
		var ids int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_message_ids m
			WHERE EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.id = m.delivery_id)`).Scan(&ids); err != nil || ids != 3 {
			t.Fatalf("%d provider message ids of kept deliveries (%v), want 3", ids, err)
		}
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_message_ids`).Scan(&ids); err != nil || ids != 3 {
			t.Fatalf("%d provider message ids (%v), want the 3 of the kept deliveries", ids, err)
		}
		if p, err := db.PruneRecords(ctx, time.Hour); err != nil || p != (sqlstore.PrunedRecords{}) {
			t.Fatalf("second run pruned %+v (%v), want nothing", p, err)
		}
	})
}
