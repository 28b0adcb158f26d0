package service_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/notify"
)

// TestKafkaModeDeliversEverything runs Herald in Kafka mode (relay from the SQL outbox,
// fan-out and channel topics on Kafka) against an in-process cluster speaking the Kafka
// protocol, on SQLite and PostgreSQL outboxes.
func TestKafkaModeDeliversEverything(t *testing.T) {
	t.Parallel()
	for _, b := range backends[:2] {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1)) // Herald creates its topics
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			cfg := testConfig(b.url(t))
			cfg.KafkaBrokers = cluster.ListenAddrs()
			svc := startWith(t, cfg)
			for i := 0; i < 10; i++ {
				putRecipient(t, svc, notify.Recipient{ID: fmt.Sprintf("k%d", i),
					Contacts: notify.Contacts{Phone: notify.Phone(fmt.Sprintf("+861380013%04d", i)), Email: notify.Email(fmt.Sprintf("k%d@example.com", i))}})
			}
			const n = 200
			var events []notify.Event
			for i := 0; i < n; i++ {
				events = append(events, posted(fmt.Sprintf("kev-%04d", i), fmt.Sprintf("k%d", i%10), "12.34"))
			}
			commit(t, svc, false, events[:n/2]...)
			commit(t, svc, false, events[n/2:]...)
			for _, e := range events {
				if got := channelsOf(terminal(t, svc, e.ID)); got != "email:sent,inapp:sent,sms:sent" {
					t.Fatalf("%s: %s", e.ID, got)
				}
			}
			// Per-account order: the events share one account, so they share one Kafka
			// partition, and the fan-out must have recorded them in commit order.
			rows, err := svc.DB.R.QueryContext(context.Background(),
				svc.DB.Rebind(`SELECT id FROM herald_notifications WHERE id LIKE 'kev-%' ORDER BY created_at, id`))
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var order []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				order = append(order, id)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			for i, id := range order {
				if id != events[i].ID {
					t.Fatalf("fan-out order broken at %d: %s before %s", i, id, events[i].ID)
				}
			}
			dups, err := svc.DB.SandboxSends().Duplicates(context.Background(), "kev-")
			if err != nil || dups != 0 {
				t.Fatalf("duplicates %d, %v", dups, err)
			}
		})
	}
}
