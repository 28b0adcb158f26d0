package service_test

import (
	"context"
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
