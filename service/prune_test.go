package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/service"
)

// TestConsumedTopicRowsArePruned runs Herald with a tiny --retain-consumed: the outbox
// and delivery topic rows go once consumed, notification and delivery records stay, and
// events committed after the pruning are delivered as before.
func TestConsumedTopicRowsArePruned(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(b.url(t))
			cfg.RetainConsumed = time.Nanosecond // pruned every second
			svc := startWith(t, cfg)
			putRecipient(t, svc, notify.Recipient{ID: "cust-p", Locale: "en",
				Contacts: notify.Contacts{Phone: "+8613800138000", Email: "p@example.com"}})
			commit(t, svc, false, posted("prune-1", "cust-p", "1.00"), posted("prune-2", "cust-p", "2.00"))
			for _, id := range []string{"prune-1", "prune-2"} {
				if got := channelsOf(terminal(t, svc, id)); got != "email:sent,inapp:sent,sms:sent" {
					t.Fatalf("%s: %s", id, got)
				}
			}
			topics := []string{sqlstore.EventsTopic, sqlstore.DeliveryTopic("sms", notify.LaneNormal),
				sqlstore.DeliveryTopic("email", notify.LaneNormal), sqlstore.DeliveryTopic("inapp", notify.LaneNormal)}
			waitFor(t, "consumed topic rows to be pruned", func() bool {
				for _, topic := range topics {
					if n := topicRows(t, svc, topic); n != 0 {
						return false
					}
				}
				return true
			})
			if got := channelsOf(terminal(t, svc, "prune-1")); got != "email:sent,inapp:sent,sms:sent" {
				t.Fatalf("records after pruning: %s", got)
			}
			commit(t, svc, false, posted("prune-3", "cust-p", "3.00"))
			if got := channelsOf(terminal(t, svc, "prune-3")); got != "email:sent,inapp:sent,sms:sent" {
				t.Fatalf("after pruning: %s", got)
			}
		})
	}
}

func topicRows(t *testing.T, svc *service.Service, topic string) int {
	t.Helper()
	table := `"` + sqlstore.TopicTable(topic) + `"`
	if svc.DB.Dialect == sqlstore.MySQL {
		table = "`" + sqlstore.TopicTable(topic) + "`"
	}
	var n int
	if err := svc.DB.R.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEndedRecordsArePruned runs Herald with a record retention of a day (the least
// allowed) on records made two days old: once every delivery of an event has ended, its
// notification, deliveries and sandbox sends go; the customer's inbox messages stay, and
// later events are delivered as before.
func TestEndedRecordsArePruned(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(b.url(t))
			cfg.RetainConsumed, cfg.RetainRecords = time.Nanosecond, 24*time.Hour // pruned every second
			svc := startWith(t, cfg)
			putRecipient(t, svc, notify.Recipient{ID: "cust-r", Locale: "en",
				Contacts: notify.Contacts{Phone: "+8613800138000", Email: "r@example.com"}})
			ctx := context.Background()
			count := func(query string, args ...any) int {
				var n int
				if err := svc.DB.R.QueryRowContext(ctx, svc.DB.Rebind(query), args...).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			commit(t, svc, false, posted("rec-1", "cust-r", "1.00"), posted("rec-2", "cust-r", "2.00"))
			for _, id := range []string{"rec-1", "rec-2"} {
				if got := channelsOf(terminal(t, svc, id)); got != "email:sent,inapp:sent,sms:sent" {
					t.Fatalf("%s: %s", id, got)
				}
			}
			if n := count(`SELECT COUNT(*) FROM herald_notifications WHERE id LIKE ?`, "rec-%"); n != 2 {
				t.Fatalf("%d notifications pruned before they were a day old", 2-n)
			}
			day := (48 * time.Hour).Microseconds()
			for _, q := range []string{`UPDATE herald_notifications SET created_at = created_at - ? WHERE id LIKE ?`,
				`UPDATE herald_deliveries SET created_at = created_at - ? WHERE event_id LIKE ?`} {
				if _, err := svc.DB.W.ExecContext(ctx, svc.DB.Rebind(q), day, "rec-%"); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the records of delivered events to be pruned", func() bool {
				return count(`SELECT COUNT(*) FROM herald_notifications WHERE id LIKE ?`, "rec-%") == 0 &&
					count(`SELECT COUNT(*) FROM herald_deliveries WHERE event_id LIKE ?`, "rec-%") == 0
			})
			if n := count(`SELECT COUNT(*) FROM herald_sandbox_sends WHERE address IN (?, ?)`, "+8613800138000", "r@example.com"); n != 0 {
				t.Fatalf("%d sandbox sends left", n)
			}
			if n := count(`SELECT COUNT(*) FROM herald_inbox WHERE recipient_id = ?`, "cust-r"); n != 2 {
				t.Fatalf("%d inbox messages, want both kept", n)
			}
			// Unknown once its consumed outbox row is pruned too (retain-consumed is never
			// longer than retain-records).
			waitFor(t, "a pruned event to be unknown", func() bool {
				_, err := svc.DB.Notifications().Get(ctx, "rec-1")
				return errors.Is(err, sqlstore.ErrNotFound)
			})
			commit(t, svc, false, posted("rec-3", "cust-r", "3.00"))
			if got := channelsOf(terminal(t, svc, "rec-3")); got != "email:sent,inapp:sent,sms:sent" {
				t.Fatalf("after pruning: %s", got)
			}
		})
	}
}
