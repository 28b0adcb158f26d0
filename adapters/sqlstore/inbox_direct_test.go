package sqlstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// A fan-out writes its inbox deliveries with the rest: the inbox message and the
// delivery recorded sent, its provider message id the inbox message's id. Running it
// again adds nothing, running it after its records were deleted records the deliveries
// of the messages there, and an in-app delivery recorded under an earlier id gets no
// second inbox message.
func TestFanOutWritesInboxDeliveries(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		at := time.Now().Add(-time.Second)
		inapp := func(event, recipient string) sqlstore.InboxDelivery {
			return sqlstore.InboxDelivery{Title: "Card debit " + recipient, Body: "CNY 12.50 at " + event, Delivery: notify.Delivery{
				ID: notify.DeliveryID(event, at, notify.ChannelInApp, recipient), EventID: event, EventType: "transaction.posted",
				Channel: notify.ChannelInApp, Lane: notify.LaneNormal, RecipientID: recipient, Address: notify.Address(recipient), OccurredAt: at}}
		}
		sms := notify.Delivery{ID: notify.DeliveryID("e-1", at, notify.ChannelSMS, "+8613800138000"), EventID: "e-1",
			EventType: "transaction.posted", Channel: notify.ChannelSMS, Lane: notify.LaneNormal, RecipientID: "cust-1",
			Address: "+8613800138000", OccurredAt: at}
		topic := sqlstore.DeliveryTopic("sms", notify.LaneNormal)
		f := sqlstore.FanOut{
			Notification: sqlstore.Notification{ID: "e-1", Type: "transaction.posted", CustomerID: "cust-1", OccurredAt: at,
				Status: sqlstore.NotificationFannedOut},
			Deliveries: []notify.Delivery{sms},
			Messages:   map[string][]*message.Message{topic: {message.NewMessage(sms.ID, []byte("{}"))}},
			// Two rows, so that the multi-row statements are used where there are any.
			Inbox: []sqlstore.InboxDelivery{inapp("e-1", "cust-1"), inapp("e-1", "cust-2")},
		}
		for run := 1; run <= 3; run++ {
			if run == 3 {
				// The event's records deleted, its inbox messages kept (PruneRecords),
				// then the event again: the deliveries name the messages there.
				for _, q := range []string{`DELETE FROM herald_deliveries WHERE event_id = 'e-1'`,
					`DELETE FROM herald_notifications WHERE id = 'e-1'`} {
					if _, err := db.W.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := db.CommitFanOut(ctx, f); err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			for _, ib := range f.Inbox {
				page, err := db.Inbox().List(ctx, ib.RecipientID, "", 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Messages) != 1 {
					t.Fatalf("run %d: inbox of %s has %d messages, want 1", run, ib.RecipientID, len(page.Messages))
				}
				m := page.Messages[0]
				if m.DeliveryID != ib.ID || m.Title != ib.Title || m.Body != ib.Body || m.EventType != "transaction.posted" {
					t.Fatalf("run %d: inbox message %+v, want delivery %s, title %q, body %q", run, m, ib.ID, ib.Title, ib.Body)
				}
				d, err := db.Deliveries().Get(ctx, ib.ID)
				if err != nil {
					t.Fatal(err)
				}
				if d.Status != notify.StatusSent || d.Provider != notify.InboxProvider || d.ProviderMessageID != strconv.FormatInt(m.ID, 10) ||
					d.Attempts != 1 || d.SentAt == nil || d.Address != ib.Address || d.EventID != "e-1" {
					t.Fatalf("run %d: in-app delivery %+v, want sent by %s as message %d", run, d, notify.InboxProvider, m.ID)
				}
			}
			d, err := db.Deliveries().Get(ctx, sms.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != notify.StatusQueued {
				t.Fatalf("run %d: SMS delivery %s, want queued", run, d.Status)
			}
			var n int
			if err := db.R.QueryRowContext(ctx, `SELECT deliveries FROM herald_notifications WHERE id = 'e-1'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 3 {
				t.Fatalf("run %d: notification counts %d deliveries, want 3", run, n)
			}
		}

		// Recorded before ids sorted by time (with its notification, as Herald records
		// every delivery): the redelivered event's inbox delivery, under the new id, is
		// neither written to the inbox nor recorded. The fan-out that redelivers it
		// carries a new event's notification (e-3), whose inbox delivery is written.
		earlier := inapp("e-2", "cust-3")
		earlier.ID = "dlv_0123456789abcdef0123456789abcdef"
		n2 := sqlstore.Notification{ID: "e-2", Type: "transaction.posted", CustomerID: "cust-3", OccurredAt: at,
			Status: sqlstore.NotificationFannedOut}
		if err := db.CommitFanOut(ctx, sqlstore.FanOut{Notification: n2, Deliveries: []notify.Delivery{earlier.Delivery}}); err != nil {
			t.Fatal(err)
		}
		n3 := n2
		n3.ID = "e-3"
		if err := db.CommitFanOut(ctx, sqlstore.FanOut{Notification: n3,
			Inbox: []sqlstore.InboxDelivery{inapp("e-2", "cust-3"), inapp("e-3", "cust-3")}}); err != nil {
			t.Fatal(err)
		}
		page, err := db.Inbox().List(ctx, "cust-3", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != 1 || page.Messages[0].DeliveryID != inapp("e-3", "cust-3").ID {
			t.Fatalf("inbox of cust-3: %+v, want only e-3's message", page.Messages)
		}
		ds, err := db.Deliveries().ByEvent(ctx, "e-2")
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].ID != earlier.ID || ds[0].Status != notify.StatusQueued {
			t.Fatalf("deliveries of e-2: %+v, want only %s, queued", ds, earlier.ID)
		}
	})
}
