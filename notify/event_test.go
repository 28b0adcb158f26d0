package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

const goodEvent = `{"event_id":"e1","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z",
"account_id":"6222020200112233","customer_id":"c1","amount":"1234.56","balance_after":"10.00",
"currency":"CNY","direction":"debit","counterparty":"Coffee Co","branch":"Pudong","risk":{"score":3}}`

func TestDecodeKeepsUnknownFields(t *testing.T) {
	t.Parallel()
	e, err := DecodeEvent([]byte(goodEvent))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Amount.Equal(decimal.RequireFromString("1234.56")) {
		t.Fatalf("amount = %v", e.Amount)
	}
	if e.ExtraString("branch") != "Pudong" {
		t.Fatalf("extra = %v", e.Extra)
	}
	out, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"branch":"Pudong"`)) || !bytes.Contains(out, []byte(`"risk":{"score":3}`)) {
		t.Fatalf("unknown fields lost in %s", out)
	}
	if !bytes.Contains(out, []byte(`"amount":"1234.56"`)) {
		t.Fatalf("amount not a decimal string in %s", out)
	}
	again, err := DecodeEvent(out)
	if err != nil || again.ExtraString("branch") != "Pudong" {
		t.Fatalf("round trip: %v %v", again.Extra, err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, json string
		fields     []string // invalid fields expected; none means valid
	}{
		{"good", goodEvent, nil},
		{"missing everything", `{}`, []string{"event_id", "type", "occurred_at"}},
		{"amount as number", `{"event_id":"e","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","account_id":"a","amount":12.5,"currency":"CNY"}`, []string{"amount"}},
		{"no amount", `{"event_id":"e","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","account_id":"a","currency":"CNY"}`, []string{"amount"}},
		{"bad currency", `{"event_id":"e","type":"transaction.declined","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","account_id":"a","amount":"1","currency":"yuan"}`, []string{"currency"}},
		{"negative", `{"event_id":"e","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","account_id":"a","amount":"-1","currency":"CNY"}`, []string{"amount"}},
		{"otp without code", `{"event_id":"e","type":"otp.requested","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c"}`, []string{"code"}},
		{"otp inline contact", `{"event_id":"e","type":"otp.requested","occurred_at":"2026-11-22T10:00:00Z","contact":{"phone":"+8613800138000"},"code":"1"}`, nil},
		{"bad phone", `{"event_id":"e","type":"security.login","occurred_at":"2026-11-22T10:00:00Z","contact":{"phone":"13800138000"}}`, []string{"contact.phone"}},
		{"unknown type", `{"event_id":"e","type":"loan.approved","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c"}`, []string{"type"}},
		{"bad locale", `{"event_id":"e","type":"security.login","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","locale":"fr"}`, []string{"locale"}},
		{"ad-hoc without content", `{"event_id":"e","type":"notification","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","channels":["sms"]}`, []string{"template"}},
		{"ad-hoc unknown channel", `{"event_id":"e","type":"notification","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","channels":["fax"],"content":{"text":"x"}}`, []string{"channels[0]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeEvent([]byte(c.json))
			if len(c.fields) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if ClassOf(err) != ClassPoison {
				t.Fatalf("error %v is not poison", err)
			}
			var v *ValidationError
			if !errors.As(err, &v) {
				t.Fatalf("error %v is not a ValidationError", err)
			}
			got := map[string]bool{}
			for _, f := range v.Fields {
				got[f.Field] = true
			}
			for _, f := range c.fields {
				if !got[f] {
					t.Errorf("field %s not reported in %v", f, v.Fields)
				}
			}
		})
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	amt := decimal.RequireFromString("50")
	minAmt := decimal.RequireFromString("100")
	e := Event{ID: "e", Type: TypeTransactionPosted, Amount: &amt}
	r := Recipient{ID: "c1", Contacts: Contacts{Phone: "+8613800138000", Email: "a@b.cn", PushTokens: []string{"t1", "t2"}}}

	targets, _ := Plan(&e, &r)
	if len(targets) != 3 { // sms, email, inapp by default
		t.Fatalf("default targets = %v", targets)
	}
	r.Preferences.Channels = map[string][]Channel{"*": {ChannelPush}}
	targets, _ = Plan(&e, &r)
	if len(targets) != 2 || targets[0].Address != "t1" || targets[1].Address != "t2" {
		t.Fatalf("push to every token: %v", targets)
	}
	r.Preferences.MinAmount = &minAmt
	if targets, why := Plan(&e, &r); len(targets) != 0 || !strings.Contains(why, "minimum") {
		t.Fatalf("below threshold: %v %q", targets, why)
	}
	e.Type = TypeSecurityLogin // thresholds apply to transaction alerts only
	if targets, _ := Plan(&e, &r); len(targets) != 2 {
		t.Fatalf("security alert ignored threshold wrongly: %v", targets)
	}
}

func TestDeliveryIDIsDeterministic(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 9, 30, 0, 123456789, time.UTC)
	a := DeliveryID("e1", at, ChannelSMS, "+8613800138000")
	if a != DeliveryID("e1", at, ChannelSMS, "+8613800138000") {
		t.Fatal("not deterministic")
	}
	if len(a) != len("dlv_")+32 || !strings.HasPrefix(a, "dlv_") {
		t.Fatalf("id %q: want dlv_ and 32 hex digits", a)
	}
	for _, other := range []string{DeliveryID("e2", at, ChannelSMS, "+8613800138000"), DeliveryID("e1", at, ChannelPush, "+8613800138000"),
		DeliveryID("e1", at, ChannelSMS, "+8613800138001"), DeliveryID("e1s", at, "ms", "+8613800138000")} {
		if other == a {
			t.Fatal("collision between different inputs")
		}
	}
}

// Ids sort by the time of their events (to the millisecond), whatever the hash: the
// deliveries of recent events sit together at the end of the primary-key index.
func TestDeliveryIDsSortByEventTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	prev := ""
	for i := range 2000 {
		id := DeliveryID(fmt.Sprintf("e%d", 2000-i), at.Add(time.Duration(i)*time.Millisecond), ChannelSMS, "+8613800138000")
		if id <= prev {
			t.Fatalf("event %d ms later has id %s, not after %s", i, id, prev)
		}
		prev = id
	}
	if DeliveryID("e", time.Time{}, ChannelSMS, "x") >= DeliveryID("e", at, ChannelSMS, "x") {
		t.Fatal("an event without a time must sort first")
	}
}

func TestPIIIsMaskedInLogs(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	m := Message{DeliveryID: "d", Channel: ChannelSMS, Address: "+8613800138000"}
	log.Info("x", "message", m, "phone", Phone("+8613912345678"), "email", Email("alice@example.com"),
		"account", AccountNumber("6222020200112233"), "addr", Address("bob@example.org"))
	out := b.String()
	for _, secret := range []string{"8613800138000", "8613912345678", "alice@", "6222020200112233", "bob@"} {
		if strings.Contains(out, secret) {
			t.Errorf("log line leaks %q: %s", secret, out)
		}
	}
	for _, masked := range []string{"+86*******8000", "a***@example.com", "****2233"} {
		if !strings.Contains(out, masked) {
			t.Errorf("log line lacks %q: %s", masked, out)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(goodEvent))
	f.Add([]byte(`{"event_id":"e","type":"otp.requested","occurred_at":"2026-11-22T10:00:00Z","customer_id":"c","code":"1"}`))
	f.Add([]byte(`{"amount":"1e400"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			if ClassOf(err) != ClassPoison {
				t.Fatalf("decode error is not poison: %v", err)
			}
			return
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("valid event does not encode: %v", err)
		}
		if _, err := DecodeEvent(out); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
	})
}
