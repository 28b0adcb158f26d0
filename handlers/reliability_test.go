package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
)

func deliverWith(t *testing.T, cfg handlers.DeliverConfig) *handlers.Deliver {
	t.Helper()
	if cfg.Channel == "" {
		cfg.Channel = notify.ChannelSMS
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	d, err := handlers.NewDeliver(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A worker that claimed a delivery and then died holds its lease until it runs out:
// meanwhile others defer the message without calling the provider; afterwards the
// delivery is sent, once.
func TestDeliverLeaseOfCrashedWorkerExpires(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	ctx := context.Background()
	if c, err := db.Deliveries().Claim(ctx, id, "crashed-worker", 300*time.Millisecond); err != nil || c.State != sqlstore.Claimed {
		t.Fatalf("claim: %+v %v", c, err)
	}
	p := &scripted{}
	d := deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries(), Owner: "w2"})
	err := d.Handle(msg)
	if notify.ClassOf(err) != notify.ClassDeferred || notify.AfterOf(err) <= 0 || p.calls != 0 {
		t.Fatalf("while leased: err %v (class %s), provider calls %d", err, notify.ClassOf(err), p.calls)
	}
	time.Sleep(350 * time.Millisecond)
	if err := d.Handle(msg); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Deliveries().Get(ctx, id)
	if got.Status != notify.StatusSent || p.calls != 1 || got.Attempts != 2 {
		t.Fatalf("after the lease: %+v, provider calls %d", got, p.calls)
	}
}

// Watermill's Deduplicator marks a message before the handler runs, so a failure
// followed by redelivery drops it. Herald's lease is released on failure: the
// redelivered message is sent.
func TestDeliverFailureAfterClaimThenRedeliveryIsSent(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	p := &scripted{results: []error{context.DeadlineExceeded}}
	d := deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries()})
	if err := d.Handle(msg); err == nil {
		t.Fatal("first attempt should fail")
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusQueued {
		t.Fatalf("after the failure the lease must be released: %+v", got)
	}
	if err := d.Handle(msg.Copy()); err != nil {
		t.Fatal(err)
	}
	got, _ = db.Deliveries().Get(context.Background(), id)
	if got.Status != notify.StatusSent || p.calls != 2 {
		t.Fatalf("redelivered: %+v, provider calls %d", got, p.calls)
	}
}

func TestBreakerOpensAndDefersWithoutBurningAttempts(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	set := metrics.NewSet()
	fails := make([]error, 3)
	for i := range fails {
		fails[i] = errors.New("connection refused")
	}
	p := &scripted{results: fails}
	br := handlers.NewBreaker("sms", handlers.BreakerConfig{Failures: 3, OpenFor: 200 * time.Millisecond}, set)
	d := deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries(), Breaker: br, Metrics: set})
	for i := 0; i < 3; i++ {
		if err := d.Handle(msg); notify.ClassOf(err) != notify.ClassTransient {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if !br.Open() {
		t.Fatal("three failures in a row should open the breaker")
	}
	err := d.Handle(msg)
	if notify.ClassOf(err) != notify.ClassDeferred || p.calls != 3 {
		t.Fatalf("open breaker: err %v, provider calls %d", err, p.calls)
	}
	got, _ := db.Deliveries().Get(context.Background(), id)
	if got.Attempts != 3 || got.Status != notify.StatusQueued {
		t.Fatalf("deferral must not count an attempt: %+v", got)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), `herald_breaker_state{provider="sms"} 2`) {
		t.Fatalf("breaker state metric missing:\n%s", buf.String())
	}
	time.Sleep(250 * time.Millisecond) // half-open: one probe passes and closes it
	if err := d.Handle(msg); err != nil {
		t.Fatal(err)
	}
	if br.Open() {
		t.Fatal("a successful probe should close the breaker")
	}
}

// A spent retry budget fails the delivery and queues the recipient's fallback.
func TestBudgetSpentFailsAndQueuesFallback(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	ctx := context.Background()
	var m notify.Message
	if err := json.Unmarshal(msg.Payload, &m); err != nil {
		t.Fatal(err)
	}
	fb := m
	fb.Channel, fb.Address, fb.DeliveryID = notify.ChannelEmail, "c@example.com", notify.DeliveryID("e1", m.OccurredAt, notify.ChannelEmail, "c@example.com")
	m.Fallback = &fb
	b, _ := json.Marshal(m)
	msg = message.NewMessage(id, b)

	p := &scripted{results: []error{errors.New("503"), errors.New("503")}}
	d := deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries(), Fallback: db,
		Budget: handlers.RetryBudget{MaxAttempts: 2, MaxAge: time.Hour}})
	if err := d.Handle(msg); notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("first attempt: %v", err)
	}
	if err := d.Handle(msg); err != nil {
		t.Fatalf("spent budget must end the delivery: %v", err)
	}
	got, _ := db.Deliveries().Get(ctx, id)
	if got.Status != notify.StatusFailed || !strings.Contains(got.LastError, "retry budget spent (2 attempts") {
		t.Fatalf("after budget: %+v", got)
	}
	f, err := db.Deliveries().Get(ctx, fb.DeliveryID)
	if err != nil || f.Status != notify.StatusQueued || f.FallbackOf != id || f.Channel != notify.ChannelEmail {
		t.Fatalf("fallback delivery: %+v %v", f, err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT COUNT(*) FROM "` + sqlstore.TopicTable(sqlstore.DeliveryTopic("email", notify.LaneNormal)) + `"`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("fallback message published %d times (%v), want 1", n, err)
	}
}

func TestRecipientCapDefersNormalLaneOnly(t *testing.T) {
	t.Parallel()
	db, msg, id := setup(t)
	ctx := context.Background()
	cp := handlers.SQLCap{Windows: db.RecipientWindows(), Max: 1, Window: time.Hour}
	// The address already had its one message this hour.
	if ok, _, err := cp.Take(ctx, "+8613800138000"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	p := &scripted{}
	d := deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries(), Cap: cp})
	err := d.Handle(msg)
	if notify.ClassOf(err) != notify.ClassDeferred || p.calls != 0 || notify.AfterOf(err) <= 0 || notify.AfterOf(err) > time.Hour {
		t.Fatalf("over the cap: %v after %s, provider calls %d", err, notify.AfterOf(err), p.calls)
	}
	got, _ := db.Deliveries().Get(ctx, id)
	if got.Status != notify.StatusQueued || got.Attempts != 0 {
		t.Fatalf("capped delivery: %+v", got)
	}
	var m notify.Message
	_ = json.Unmarshal(msg.Payload, &m)
	m.Lane = notify.LaneCritical
	b, _ := json.Marshal(m)
	if err := d.Handle(message.NewMessage(id, b)); err != nil || p.calls != 1 {
		t.Fatalf("critical lane is exempt: %v, calls %d", err, p.calls)
	}
}

// slowProvider takes d to answer, then answers as scripted does.
type slowProvider struct {
	scripted
	d time.Duration
}

func (p *slowProvider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	time.Sleep(p.d)
	return p.scripted.Send(ctx, m)
}

// herald_delivery_stage_seconds splits a delivery's time in the handler: the queued
// stage once (a retry's wait includes its backoff), the claim and the provider's call
// per attempt, the record of the send once it is accepted.
func TestDeliverStageMetrics(t *testing.T) {
	t.Parallel()
	db, msg, _ := setup(t)
	set := metrics.NewSet()
	p := &slowProvider{scripted: scripted{results: []error{context.DeadlineExceeded}}, d: 30 * time.Millisecond}
	d := deliverWith(t, handlers.DeliverConfig{Provider: p, Store: db.Deliveries(), Metrics: set})
	if err := d.Handle(msg); notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("first attempt: %v", err)
	}
	if err := d.Handle(msg.Copy()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	values := map[string]float64{}
	for _, line := range strings.Split(buf.String(), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "herald_delivery_stage_seconds_") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		values[name] = v
	}
	for stage, want := range map[string]float64{"queued": 1, "claim": 2, "provider": 2, "record": 1} {
		name := fmt.Sprintf(`herald_delivery_stage_seconds_count{channel="sms",stage=%q}`, stage)
		if values[name] != want {
			t.Errorf("%s = %v, want %v", name, values[name], want)
		}
	}
	if sum := values[`herald_delivery_stage_seconds_sum{channel="sms",stage="provider"}`]; sum < 0.06 {
		t.Errorf("provider stage: %v s in all, want at least two calls of 30 ms", sum)
	}
}
