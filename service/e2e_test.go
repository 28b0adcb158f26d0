package service_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/service"
)

const apiKey = "test-key-123"

// backends are the databases every end-to-end test runs on.
var backends = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "herald.db") }},
	{"postgres", func(t *testing.T) string { return testdb.Postgres(t) }},
	{"mysql", func(t *testing.T) string { return testdb.MySQL(t) }},
}

// eachBackend runs fn against a fresh Herald on every backend.
func eachBackend(t *testing.T, fn func(t *testing.T, svc *service.Service)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, startOn(t, b.url(t)))
		})
	}
}

func testConfig(url string) config.Config {
	c, err := config.Default()
	if err != nil {
		panic(err)
	}
	c.DB, c.DBMaxConns, c.Addr, c.APIKeys = url, 8, "127.0.0.1:0", []string{apiKey}
	c.Bank, c.PollInterval, c.BodyLimit, c.LogFormat = "Test Bank", 5*time.Millisecond, 64<<10, "text"
	return c
}

// start opens a Service on SQLite and runs its pipeline for the duration of the test.
func start(t *testing.T) *service.Service {
	t.Helper()
	return startOn(t, backends[0].url(t))
}

// startOn opens a Service on the database at url and runs its pipeline for the
// duration of the test.
func startOn(t *testing.T, url string) *service.Service {
	t.Helper()
	return startWith(t, testConfig(url))
}

// startWith opens a Service with cfg and runs its pipeline for the duration of the test.
func startWith(t *testing.T, cfg config.Config) *service.Service {
	t.Helper()
	svc, _ := startStoppable(t, cfg)
	return svc
}

// startStoppable opens a Service with cfg and runs its pipeline until stop is called or
// the test ends. stop stops the pipeline and closes the Service, once.
func startStoppable(t *testing.T, cfg config.Config) (svc *service.Service, stop func()) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLogWriter(), &slog.HandlerOptions{Level: slog.LevelError}))
	svc, err := service.Open(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pipeline: %v", err)
			}
			if err := svc.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	go func() { done <- svc.RunPipeline(ctx) }()
	t.Cleanup(stop)
	<-svc.Router.Running()
	return svc, stop
}

func dec(s string) *decimal.Decimal {
	d := decimal.RequireFromString(s)
	return &d
}

func posted(id, customer, amount string) notify.Event {
	return notify.Event{
		ID: id, Type: notify.TypeTransactionPosted, OccurredAt: time.Now().UTC(),
		AccountID: "6222020200112233", CustomerID: customer, Amount: dec(amount), BalanceAfter: dec("10000.00"),
		Currency: "CNY", Direction: "debit", Counterparty: "Coffee Co",
	}
}

// commit writes a business row and the outbox rows in one transaction, as a banking
// core does; rollback=true aborts it instead.
func commit(t *testing.T, svc *service.Service, rollback bool, events ...notify.Event) {
	t.Helper()
	ctx := context.Background()
	if _, err := svc.DB.W.ExecContext(ctx, svc.DB.Rebind(`CREATE TABLE IF NOT EXISTS core_ledger (id VARCHAR(64) PRIMARY KEY, amount TEXT)`)); err != nil {
		t.Fatal(err)
	}
	tx, err := svc.DB.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, svc.DB.Rebind(`INSERT INTO core_ledger (id, amount) VALUES (?, ?)`), e.ID, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Outbox.Write(ctx, tx, events...); err != nil {
		t.Fatal(err)
	}
	if rollback {
		err = tx.Rollback()
	} else {
		err = tx.Commit()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func putRecipient(t *testing.T, svc *service.Service, r notify.Recipient) {
	t.Helper()
	if _, err := svc.DB.Recipients().Put(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// terminal waits until the event has been fanned out and all its deliveries ended.
func terminal(t *testing.T, svc *service.Service, eventID string) []notify.Delivery {
	t.Helper()
	var ds []notify.Delivery
	waitFor(t, "event "+eventID+" to end", func() bool {
		n, err := svc.DB.Notifications().Get(context.Background(), eventID)
		if err != nil || n.Status == sqlstore.NotificationPending {
			return false
		}
		ds, err = svc.DB.Deliveries().ByEvent(context.Background(), eventID)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if !d.Status.Terminal() {
				return false
			}
		}
		return true
	})
	return ds
}

func channelsOf(ds []notify.Delivery) string {
	var cs []string
	for _, d := range ds {
		cs = append(cs, string(d.Channel)+":"+string(d.Status))
	}
	return strings.Join(cs, ",")
}

func TestCommittedEventIsDelivered(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		putRecipient(t, svc, notify.Recipient{ID: "cust-1", Locale: "en", TimeZone: "Europe/London",
			Contacts: notify.Contacts{Phone: "+8613800138000", Email: "alice@example.com"}})
		commit(t, svc, false, posted("evt-ok", "cust-1", "1234.56"))

		ds := terminal(t, svc, "evt-ok")
		if got := channelsOf(ds); got != "email:sent,inapp:sent,sms:sent" {
			t.Fatalf("deliveries = %s", got)
		}
		ctx := context.Background()
		for _, d := range ds {
			if d.Attempts != 1 || d.SentAt == nil || d.ProviderMessageID == "" {
				t.Errorf("delivery %+v: want 1 attempt, sent_at and provider id", d)
			}
			if d.ID != notify.DeliveryID("evt-ok", d.OccurredAt, d.Channel, string(d.Address)) {
				t.Errorf("delivery id %s is not deterministic", d.ID)
			}
		}
		var body string
		if err := svc.DB.R.QueryRowContext(ctx, svc.DB.Rebind(`SELECT body FROM herald_sandbox_sends WHERE channel = 'sms'`)).Scan(&body); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "CNY 1,234.56") || !strings.Contains(body, "****2233") {
			t.Errorf("sms body %q lacks formatted amount or masked account", body)
		}
		page, err := svc.DB.Inbox().List(ctx, "cust-1", "", 10)
		if err != nil || len(page.Messages) != 1 || page.Unread != 1 {
			t.Fatalf("inbox = %+v, %v", page, err)
		}
	})
}

func TestRolledBackTransactionSendsNothing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		putRecipient(t, svc, notify.Recipient{ID: "cust-1", Contacts: notify.Contacts{Phone: "+8613800138000"}})
		commit(t, svc, true, posted("evt-rolled-back", "cust-1", "10"))
		// SQL topics are ordered: once a later event is done, an earlier one would be too.
		commit(t, svc, false, posted("evt-barrier", "cust-1", "10"))
		terminal(t, svc, "evt-barrier")

		ctx := context.Background()
		if _, err := svc.DB.Notifications().Get(ctx, "evt-rolled-back"); !errors.Is(err, sqlstore.ErrNotFound) {
			t.Fatalf("rolled-back event is known: %v", err)
		}
		var n int
		if err := svc.DB.R.QueryRowContext(ctx, svc.DB.Rebind(`SELECT COUNT(*) FROM herald_sandbox_sends s JOIN herald_deliveries d ON d.id = s.delivery_id
		WHERE d.event_id = 'evt-rolled-back'`)).Scan(&n); err != nil || n != 0 {
			t.Fatalf("sends for rolled-back event: %d, %v", n, err)
		}
	})
}

func TestMalformedEventIsPoisonedAndPipelineContinues(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		putRecipient(t, svc, notify.Recipient{ID: "cust-1", Contacts: notify.Contacts{Phone: "+8613800138000"}})
		ctx := context.Background()
		// What a careless core could write with plain SQL: broken JSON (PostgreSQL and
		// MySQL refuse it already: the outbox payload column is JSON), then a valid JSON
		// event whose amount has no currency.
		_, err := svc.DB.W.ExecContext(ctx, svc.DB.Rebind(`INSERT INTO herald_events (uuid, payload) VALUES (?, ?)`),
			"evt-broken", `{"event_id": "evt-broken", "type": `)
		brokenStored := err == nil
		if svc.DB.Dialect == sqlstore.SQLite && err != nil {
			t.Fatal(err)
		}
		if svc.DB.Dialect != sqlstore.SQLite && err == nil {
			t.Fatal("the database accepted a payload that is not JSON")
		}
		if _, err := svc.DB.W.ExecContext(ctx, svc.DB.Rebind(`INSERT INTO herald_events (uuid, payload) VALUES (?, ?)`), "evt-invalid",
			`{"event_id":"evt-invalid","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","customer_id":"cust-1","account_id":"1","amount":"12.50"}`); err != nil {
			t.Fatal(err)
		}
		commit(t, svc, false, posted("evt-good", "cust-1", "10"))
		if got := channelsOf(terminal(t, svc, "evt-good")); got != "inapp:sent,sms:sent" {
			t.Fatalf("good event after poison: %s", got)
		}

		// The bad events have other ordering keys than the good one (or none), so they
		// may still be in flight when it is done.
		want := 1
		if brokenStored {
			want = 2
		}
		var entries []sqlstore.PoisonEntry
		waitUntil(t, 10*time.Second, func() bool {
			var err error
			entries, _, err = svc.DB.Poison().List(ctx, "", "", 10)
			if err != nil {
				t.Fatal(err)
			}
			return len(entries) >= want
		})
		reasons := map[string]string{}
		for _, e := range entries {
			reasons[e.MessageUUID] = e.Reason
			if e.Topic != "events" || e.Handler != "fanout" {
				t.Errorf("poison entry %+v: want topic events, handler fanout", e)
			}
		}
		if brokenStored && !strings.Contains(reasons["evt-broken"], "decoding event") {
			t.Errorf("broken event reason = %q", reasons["evt-broken"])
		}
		if !strings.Contains(reasons["evt-invalid"], "currency") {
			t.Errorf("invalid event reason = %q", reasons["evt-invalid"])
		}
		n, err := svc.DB.Notifications().Get(ctx, "evt-invalid")
		if err != nil || n.Status != sqlstore.NotificationPoisoned {
			t.Errorf("invalid event status = %+v, %v", n, err)
		}
	})
}

// TestOutboxRowWithBadMetadataIsDelivered writes, with plain SQL, an outbox row whose
// metadata is JSON but not an object of strings (the table takes it: docs/outbox.md
// asks for strings): the event is still delivered from its payload, and the events
// after it too; such a row stopped PostgreSQL's outbox, read again and again.
func TestOutboxRowWithBadMetadataIsDelivered(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		putRecipient(t, svc, notify.Recipient{ID: "cust-1", Contacts: notify.Contacts{Phone: "+8613800138000"}})
		payload, err := json.Marshal(posted("evt-bad-metadata", "cust-1", "12.50"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.DB.W.ExecContext(context.Background(), svc.DB.Rebind(`INSERT INTO herald_events (uuid, payload, metadata) VALUES (?, ?, ?)`),
			"evt-bad-metadata", string(payload), `{"account_id": 6222020200112233, "tags": ["a"]}`); err != nil {
			t.Fatal(err)
		}
		commit(t, svc, false, posted("evt-after", "cust-1", "10"))
		for _, id := range []string{"evt-bad-metadata", "evt-after"} {
			if got := channelsOf(terminal(t, svc, id)); got != "inapp:sent,sms:sent" {
				t.Errorf("%s: %s", id, got)
			}
		}
	})
}

func TestPreferencesAndThresholdsChooseChannels(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		putRecipient(t, svc, notify.Recipient{ID: "cust-p",
			Contacts: notify.Contacts{Phone: "+8613800138001", Email: "p@example.com", WeChatOpenID: "o-p"},
			Preferences: notify.Preferences{
				Channels:  map[string][]notify.Channel{notify.TypeTransactionPosted: {notify.ChannelWeChat, notify.ChannelEmail}},
				MinAmount: dec("100"),
			}})
		commit(t, svc, false, posted("evt-small", "cust-p", "99.99"), posted("evt-big", "cust-p", "100.00"))
		if ds := terminal(t, svc, "evt-big"); channelsOf(ds) != "email:sent,wechat:sent" {
			t.Fatalf("preferred channels: %s", channelsOf(ds))
		}
		n, err := svc.DB.Notifications().Get(context.Background(), "evt-small")
		if err != nil || n.Status != sqlstore.NotificationSkipped || !strings.Contains(n.Reason, "minimum") {
			t.Fatalf("below threshold: %+v, %v", n, err)
		}
		// An inline contact overrides the directory.
		e := posted("evt-inline", "cust-p", "500")
		e.Contact = &notify.Contacts{Email: "override@example.com"}
		commit(t, svc, false, e)
		for _, d := range terminal(t, svc, "evt-inline") {
			if d.Channel == notify.ChannelEmail && d.Address != "override@example.com" {
				t.Errorf("inline contact ignored: %s", d.Address)
			}
		}
	})
}

func api(t *testing.T, svc *service.Service, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := svc.Server.App().Test(req, 10000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && json.Unmarshal(b, &out) != nil {
		out = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, out
}

func TestAdHocNotificationThroughAPI(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		code, body := api(t, svc, "PUT", "/v1/recipients/cust-a",
			`{"contacts":{"phone":"+8613800138000","email":"a@example.com","wechat_openid":"o-1","push_tokens":[],"webhook_url":""},"locale":"zh-CN","time_zone":"Asia/Shanghai","preferences":{}}`)
		if code != http.StatusOK {
			t.Fatalf("put recipient: %d %v", code, body)
		}
		req := `{"recipient":{"customer_id":"cust-a"},"channels":["sms","email"],"template":"otp.requested","data":{"code":"123456"}}`
		code, body = api(t, svc, "POST", "/v1/notifications", req, "Idempotency-Key", "k-1")
		if code != http.StatusAccepted {
			t.Fatalf("post notification: %d %v", code, body)
		}
		id, _ := body["id"].(string)
		code, again := api(t, svc, "POST", "/v1/notifications", req, "Idempotency-Key", "k-1")
		if code != http.StatusOK || again["id"] != id {
			t.Fatalf("idempotent repeat: %d %v, want 200 with id %s", code, again, id)
		}
		terminal(t, svc, id)
		code, body = api(t, svc, "GET", "/v1/notifications/"+id, "")
		if code != http.StatusOK {
			t.Fatalf("get notification: %d %v", code, body)
		}
		ds, _ := body["deliveries"].([]any)
		if len(ds) != 2 {
			t.Fatalf("deliveries = %v", body["deliveries"])
		}
		for _, d := range ds {
			m := d.(map[string]any)
			if m["status"] != "sent" || m["attempts"] != float64(1) {
				t.Errorf("delivery %v: want sent after 1 attempt", m)
			}
		}
		var sms string
		if err := svc.DB.R.QueryRowContext(context.Background(),
			svc.DB.Rebind(`SELECT body FROM herald_sandbox_sends WHERE channel = 'sms'`)).Scan(&sms); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
		if !strings.Contains(sms, "123456") {
			t.Errorf("otp sms %q lacks the code", sms)
		}

		// Raw address and raw content.
		code, body = api(t, svc, "POST", "/v1/notifications",
			`{"recipient":{"phone":"+8613900139000"},"channels":["sms"],"content":{"text":"Branch closed today"}}`)
		if code != http.StatusAccepted {
			t.Fatalf("raw notification: %d %v", code, body)
		}
		raw := terminal(t, svc, body["id"].(string))
		if len(raw) != 1 || raw[0].Address != "+8613900139000" || raw[0].Status != notify.StatusSent {
			t.Fatalf("raw deliveries = %+v", raw)
		}
	})
}

func TestAPIErrorsAreProblems(t *testing.T) {
	t.Parallel()
	svc := start(t)
	cases := []struct {
		method, path, body string
		status             int
		field              string
	}{
		{"POST", "/v1/events", `{"event_id":"e1","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","account_id":"a","amount":"x1","currency":"CNY"}`, 400, ""},
		{"POST", "/v1/events", `{"event_id":"e1","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","account_id":"a","currency":"CNY"}`, 422, "amount"},
		{"POST", "/v1/notifications", `{"recipient":{"phone":"12"},"channels":["fax"],"content":{"text":"x"}}`, 422, "channels[0]"},
		{"PUT", "/v1/recipients/c1", `{"contacts":{"email":"nope"},"time_zone":"Mars/Base"}`, 422, "contacts.email"},
		{"GET", "/v1/deliveries?status=lost", ``, 400, "status"},
		{"GET", "/v1/deliveries?cursor=%%%", ``, 400, ""},
		{"GET", "/v1/notifications/unknown", ``, 404, ""},
	}
	for _, c := range cases {
		code, body := api(t, svc, c.method, c.path, c.body)
		if code != c.status {
			t.Errorf("%s %s: status %d %v, want %d", c.method, c.path, code, body, c.status)
			continue
		}
		if body["status"] != float64(c.status) || body["title"] == "" {
			t.Errorf("%s %s: not a problem document: %v", c.method, c.path, body)
		}
		if c.field != "" && !strings.Contains(toJSON(body["errors"]), `"field":"`+c.field+`"`) {
			t.Errorf("%s %s: errors %v lack field %s", c.method, c.path, body["errors"], c.field)
		}
	}
	req := httptest.NewRequest("GET", "/v1/deliveries", nil)
	resp, err := svc.Server.App().Test(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("without key: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	svc := start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.Server.Serve(ln) }()
	t.Cleanup(func() { _ = svc.Server.Shutdown(context.Background()) })
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/events", strings.NewReader(strings.Repeat("x", 70<<10)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", resp.StatusCode)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	t.Parallel()
	svc := start(t)
	waitFor(t, "readiness", func() bool {
		code, _ := api(t, svc, "GET", "/readyz", "")
		return code == http.StatusOK
	})
	if code, body := api(t, svc, "GET", "/healthz", ""); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("healthz: %d %v", code, body)
	}
	putRecipient(t, svc, notify.Recipient{ID: "cust-m", Contacts: notify.Contacts{Phone: "+8613800138000"}})
	commit(t, svc, false, posted("evt-m", "cust-m", "10"))
	terminal(t, svc, "evt-m")
	if _, err := svc.DB.W.ExecContext(context.Background(), svc.DB.Rebind(`INSERT INTO herald_events (uuid, payload) VALUES ('bad', 'nope')`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "poisoning", func() bool {
		es, _, _ := svc.DB.Poison().List(context.Background(), "", "", 1)
		return len(es) == 1
	})
	// The entry is stored before the counter moves: wait for both.
	waitFor(t, "the poison counter", func() bool {
		var buf bytes.Buffer
		svc.Metrics.WritePrometheus(&buf)
		return strings.Contains(buf.String(), `herald_poisoned_total{handler="fanout"} 1`)
	})

	req := httptest.NewRequest("GET", "/metrics", nil) // no API key needed for scrapers
	resp, err := svc.Server.App().Test(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := string(b)
	for _, want := range []string{
		`herald_events_consumed_total{type="transaction.posted"} 1`,
		`herald_deliveries_total{channel="sms",status="sent"} 1`,
		`herald_deliveries_total{channel="inapp",status="sent"} 1`,
		`herald_delivery_latency_seconds_count{channel="sms"} 1`,
		`herald_handler_duration_seconds_bucket{handler="fanout"`,
		`herald_poisoned_total{handler="fanout"} 1`,
		`herald_outbox_lag_seconds 0`,
		`herald_sqlite_wal_pages `,
		`herald_sqlite_checkpoint_failures_total 0`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestInboxAPI(t *testing.T) {
	t.Parallel()
	svc := start(t)
	putRecipient(t, svc, notify.Recipient{ID: "cust-i", Locale: "en"})
	var ids []string
	for i := 0; i < 3; i++ {
		e := posted("evt-i"+string(rune('a'+i)), "cust-i", "10")
		e.Channels = []notify.Channel{notify.ChannelInApp}
		commit(t, svc, false, e)
		ids = append(ids, e.ID)
	}
	terminal(t, svc, ids[2])
	code, body := api(t, svc, "GET", "/v1/recipients/cust-i/inbox?limit=2", "")
	if code != http.StatusOK || body["unread"] != float64(3) {
		t.Fatalf("inbox: %d %v", code, body)
	}
	msgs := body["messages"].([]any)
	if len(msgs) != 2 || body["next_cursor"] == "" {
		t.Fatalf("first page: %v", body)
	}
	if title := msgs[0].(map[string]any)["title"]; title != "Account debited" {
		t.Errorf("title = %v", title)
	}
	code, body = api(t, svc, "GET", "/v1/recipients/cust-i/inbox?limit=2&cursor="+body["next_cursor"].(string), "")
	if code != http.StatusOK || len(body["messages"].([]any)) != 1 {
		t.Fatalf("second page: %d %v", code, body)
	}
}

// testLogWriter shows Herald's error logs with -v (HERALD_TEST_LOG=1), else discards them.
func testLogWriter() io.Writer {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// TestPoisonReplay: a valid event poisoned by a failure that has since been fixed is
// replayed through the API and delivered; deleting removes an entry.
func TestPoisonReplay(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, svc *service.Service) {
		ctx := context.Background()
		putRecipient(t, svc, notify.Recipient{ID: "cust-r", Contacts: notify.Contacts{Phone: "+8613800138000"}})
		e := posted("evt-replay", "cust-r", "10")
		payload, _ := json.Marshal(e)
		// As the poison queue middleware stores it after, say, the directory was down.
		if err := svc.DB.Poison().Add(ctx, sqlstore.PoisonEntry{MessageUUID: e.ID, Topic: "events", Handler: "fanout",
			Reason: "looking up recipient: connection refused", Payload: payload,
			Metadata: map[string]string{"reason_poisoned": "connection refused", "account_id": e.AccountID}}); err != nil {
			t.Fatal(err)
		}
		entries, _, err := svc.DB.Poison().List(ctx, "events", "", 10)
		if err != nil || len(entries) != 1 {
			t.Fatalf("poison list: %v %v", entries, err)
		}
		id := strconv.FormatInt(entries[0].ID, 10)
		if code, body := api(t, svc, "POST", "/v1/poison/"+id+"/replay", ""); code != http.StatusAccepted {
			t.Fatalf("replay: %d %v", code, body)
		}
		if got := channelsOf(terminal(t, svc, e.ID)); got != "inapp:sent,sms:sent" {
			t.Fatalf("replayed event deliveries: %s", got)
		}
		if code, _ := api(t, svc, "POST", "/v1/poison/"+id+"/replay", ""); code != http.StatusNotFound {
			t.Fatalf("second replay: %d, want 404", code)
		}
		if err := svc.DB.Poison().Add(ctx, sqlstore.PoisonEntry{MessageUUID: "x", Topic: "events", Reason: "r", Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		entries, _, _ = svc.DB.Poison().List(ctx, "", "", 10)
		del := strconv.FormatInt(entries[0].ID, 10)
		if code, _ := api(t, svc, "DELETE", "/v1/poison/"+del, ""); code != http.StatusNoContent {
			t.Fatalf("delete: %d", code)
		}
		if code, _ := api(t, svc, "DELETE", "/v1/poison/"+del, ""); code != http.StatusNotFound {
			t.Fatalf("second delete: %d, want 404", code)
		}
	})
}

// TestStaleOTPExpires: an OTP event older than its TTL ends expired, unsent; a fresh
// one is sent.
func TestStaleOTPExpires(t *testing.T) {
	t.Parallel()
	svc := start(t)
	putRecipient(t, svc, notify.Recipient{ID: "cust-o", Contacts: notify.Contacts{Phone: "+8613800138000"}})
	otp := func(id string, age time.Duration) notify.Event {
		e := notify.Event{ID: id, Type: notify.TypeOTPRequested, OccurredAt: time.Now().Add(-age).UTC(), CustomerID: "cust-o",
			Extra: map[string]any{"code": "123456"}}
		return e
	}
	commit(t, svc, false, otp("otp-stale", 6*time.Minute), otp("otp-fresh", 0))
	stale := terminal(t, svc, "otp-stale")
	if got := channelsOf(stale); got != "sms:expired" {
		t.Fatalf("stale otp: %s", got)
	}
	if got := channelsOf(terminal(t, svc, "otp-fresh")); got != "sms:sent" {
		t.Fatalf("fresh otp: %s", got)
	}
	n, err := svc.DB.SandboxSends().Count(context.Background(), stale[0].ID)
	if err != nil || n != 0 {
		t.Fatalf("stale otp reached the provider %d times (%v)", n, err)
	}
}
