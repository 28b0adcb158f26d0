package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
)

// scripted answers Send with the queued results, then succeeds.
type scripted struct {
	results []error
	calls   int
}

func (s *scripted) Send(context.Context, notify.Message) (notify.Receipt, error) {
	s.calls++
	if len(s.results) > 0 {
		err := s.results[0]
		s.results = s.results[1:]
		if err != nil {
			return notify.Receipt{}, err
		}
	}
	return notify.Receipt{Provider: "scripted", ProviderMessageID: "p-1"}, nil
}

func setup(t *testing.T) (*sqlstore.DB, *message.Message, string) {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background(), []string{"sms", "email"}); err != nil {
		t.Fatal(err)
	}
	m := notify.Message{DeliveryID: notify.DeliveryID("e1", time.Now(), notify.ChannelSMS, "+8613800138000"), EventID: "e1",
		Channel: notify.ChannelSMS, Address: "+8613800138000", Content: notify.Content{Text: "hi"}, OccurredAt: time.Now()}
	err = db.Deliveries().InsertQueued(context.Background(), db.W, []notify.Delivery{{ID: m.DeliveryID, EventID: "e1",
		EventType: "x", Channel: m.Channel, Lane: notify.LaneNormal, Address: m.Address, OccurredAt: m.OccurredAt}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	return db, message.NewMessage(m.DeliveryID, b), m.DeliveryID
}

// payloadOf decodes msg's notify.Message.
func payloadOf(t *testing.T, msg *message.Message) notify.Message {
	t.Helper()
	var m notify.Message
	if err := json.Unmarshal(msg.Payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// expiredPayloadOf is payloadOf with an expiry a second ago (a stale one-time password).
func expiredPayloadOf(t *testing.T, msg *message.Message) notify.Message {
	t.Helper()
	m := payloadOf(t, msg)
	past := time.Now().Add(-time.Second)
	m.ExpiresAt = &past
	return m
}

func newDeliver(t *testing.T, db *sqlstore.DB, p handlers.Provider) *handlers.Deliver {
	t.Helper()
	return deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries()})
}

func TestDeliverTransientThenSent(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	p := &scripted{results: []error{errors.New("gateway timeout")}}
	d := newDeliver(t, db, p)
	err := d.Handle(msg)
	if err == nil || !handlers.ShouldRetry(err) {
		t.Fatalf("transient failure: %v, want a retryable error", err)
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusQueued || got.LastError == "" || got.Attempts != 1 {
		t.Fatalf("after transient failure: %+v", got)
	}
	if err := d.Handle(msg); err != nil {
		t.Fatal(err)
	}
	got, _ = db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusSent || got.Attempts != 2 || got.LastError != "" || got.ProviderMessageID != "p-1" {
		t.Fatalf("after retry: %+v", got)
	}
	// Redelivery of a sent message is absorbed: the provider is not called again.
	if err := d.Handle(msg); err != nil {
		t.Fatal(err)
	}
	if p.calls != 2 {
		t.Fatalf("provider called %d times, want 2", p.calls)
	}
}

func TestDeliverPermanentFails(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	d := newDeliver(t, db, &scripted{results: []error{notify.Permanent(errors.New("number does not exist"))}})
	if err := d.Handle(msg); err != nil {
		t.Fatalf("permanent failure must be acknowledged, got %v", err)
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusFailed || got.LastError != "number does not exist" {
		t.Fatalf("after permanent failure: %+v", got)
	}
}

func TestDeliverUndecodableIsPoison(t *testing.T) {
	t.Parallel()
	db, _, _ := setup(t)
	d := newDeliver(t, db, &scripted{})
	err := d.Handle(message.NewMessage("x", []byte("{")))
	if notify.ClassOf(err) != notify.ClassPoison || handlers.ShouldRetry(err) {
		t.Fatalf("undecodable message: %v, want poison", err)
	}
}

func TestDeliverExpiredOTPIsNotSent(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	m := expiredPayloadOf(t, msg)
	b, _ := json.Marshal(m)
	p := &scripted{}
	if err := newDeliver(t, db, p).Handle(message.NewMessage(id, b)); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusExpired || p.calls != 0 {
		t.Fatalf("expired OTP: status %s, provider calls %d", got.Status, p.calls)
	}
}

// An expired message whose id is unknown ends the delivery recorded under an earlier
// id for the same event, channel and address; one for no delivery at all is poison.
func TestExpiredMessageWithNewIDEndsTheRecordedDelivery(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	m := expiredPayloadOf(t, msg)
	m.DeliveryID = notify.DeliveryID(m.EventID, m.OccurredAt.Add(time.Hour), m.Channel, string(m.Address))
	b, _ := json.Marshal(m)
	p := &scripted{}
	d := newDeliver(t, db, p)
	if err := d.Handle(message.NewMessage(m.DeliveryID, b)); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusExpired || p.calls != 0 {
		t.Fatalf("recorded delivery %s after its expired message, %d provider calls; want expired, none", got.Status, p.calls)
	}
	m.DeliveryID, m.EventID = "dlv_unknown", "e-unknown"
	b, _ = json.Marshal(m)
	if err := d.Handle(message.NewMessage(m.DeliveryID, b)); notify.ClassOf(err) != notify.ClassPoison {
		t.Fatalf("an expired message for no delivery: %v, want poison", err)
	}
}

// A message whose id is unknown stands for the delivery recorded under an earlier id
// for the same event, channel and address (an event redelivered after an upgrade): that
// delivery is sent, once.
func TestMessageWithNewIDDeliversTheRecordedDelivery(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	m := payloadOf(t, msg)
	m.DeliveryID = notify.DeliveryID(m.EventID, m.OccurredAt.Add(time.Hour), m.Channel, string(m.Address))
	b, _ := json.Marshal(m)
	p := &scripted{}
	d := newDeliver(t, db, p)
	if err := d.Handle(message.NewMessage(m.DeliveryID, b)); err != nil {
		t.Fatal(err)
	}
	if err := d.Handle(msg); err != nil { // the message with the recorded id
		t.Fatal(err)
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if p.calls != 1 || got.Status != notify.StatusSent {
		t.Fatalf("%d provider calls, delivery %+v; want one call and sent", p.calls, got)
	}
	m.DeliveryID, m.EventID = "dlv_unknown", "e-unknown"
	b, _ = json.Marshal(m)
	if err := d.Handle(message.NewMessage(m.DeliveryID, b)); notify.ClassOf(err) != notify.ClassPoison {
		t.Fatalf("a message for no delivery: %v, want poison", err)
	}
}
