package templates

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/heraldhq/herald/notify"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestFormatMoney(t *testing.T) {
	t.Parallel()
	cases := []struct {
		amount, currency, locale, want string
	}{
		{"1234.56", "CNY", "zh-CN", "¥1,234.56"},
		{"1234.56", "CNY", "en", "CNY 1,234.56"},
		{"1234567.005", "CNY", "en", "CNY 1,234,567.01"},
		{"0.1", "USD", "zh-CN", "US$0.10"},
		{"999", "CNY", "zh-CN", "¥999.00"},
		{"100000", "JPY", "en", "JPY 100,000"},
		{"-12.5", "EUR", "en", "-EUR 12.50"},
		{"12345678901234567890.12", "CNY", "en", "CNY 12,345,678,901,234,567,890.12"},
	}
	for _, c := range cases {
		got := FormatMoney(decimal.RequireFromString(c.amount), c.currency, c.locale)
		if got != c.want {
			t.Errorf("FormatMoney(%s, %s, %s) = %q, want %q", c.amount, c.currency, c.locale, got, c.want)
		}
	}
}

func sampleEvent(typ string) notify.Event {
	amt := decimal.RequireFromString("1234.56")
	bal := decimal.RequireFromString("98765.4")
	e := notify.Event{
		ID: "evt-1", Type: typ, OccurredAt: time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC),
		AccountID: "6222020200112233", CustomerID: "cust-1", Amount: &amt, BalanceAfter: &bal,
		Currency: "CNY", Direction: "debit", Counterparty: "Zhang San", Merchant: "Coffee Co",
	}
	b, _ := json.Marshal(e)
	var withExtra map[string]any
	_ = json.Unmarshal(b, &withExtra)
	withExtra["code"] = "493817"
	withExtra["ip"] = "203.0.113.7"
	withExtra["device"] = "iPhone"
	withExtra["reason"] = "insufficient funds"
	b, _ = json.Marshal(withExtra)
	var out notify.Event
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// TestGolden renders every built-in template for every channel and compares it with
// testdata/*.golden (go test ./templates -update rewrites them).
func TestGolden(t *testing.T) {
	t.Parallel()
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, locale := range notify.Locales {
		for _, typ := range notify.KnownTypes {
			e := sampleEvent(typ)
			var b strings.Builder
			for _, ch := range notify.AllChannels {
				c, err := r.Render(&e, ch, locale, "Asia/Shanghai")
				if err != nil {
					t.Fatalf("%s %s %s: %v", locale, typ, ch, err)
				}
				if c.Empty() {
					t.Fatalf("%s %s %s: empty content", locale, typ, ch)
				}
				js, _ := json.MarshalIndent(c, "", "  ")
				b.WriteString("## " + string(ch) + "\n" + string(js) + "\n")
			}
			golden := filepath.Join("testdata", locale+"_"+typ+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update)", err)
			}
			if string(want) != b.String() {
				t.Errorf("%s differs from rendering:\n%s", golden, b.String())
			}
		}
	}
}

func TestRenderFormatsForReader(t *testing.T) {
	t.Parallel()
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := sampleEvent(notify.TypeTransactionPosted)
	zh, err := r.Render(&e, notify.ChannelSMS, "zh-CN", "Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"¥1,234.56", "2233", "2026-11-22 09:30", "支出"} {
		if !strings.Contains(zh.Text, want) {
			t.Errorf("zh-CN sms %q lacks %q", zh.Text, want)
		}
	}
	if strings.Contains(zh.Text, "6222020200112233") {
		t.Errorf("full account number in %q", zh.Text)
	}
	en, err := r.Render(&e, notify.ChannelEmail, "en", "America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CNY 1,234.56", "****2233", "21 Nov 2026 20:30 EST"} {
		if !strings.Contains(en.Text, want) {
			t.Errorf("en email %q lacks %q", en.Text, want)
		}
	}
	if en.Subject == "" || en.HTML == "" {
		t.Errorf("email lacks subject or html: %+v", en)
	}
}

func TestRenderRawContent(t *testing.T) {
	t.Parallel()
	r, _ := New(Config{})
	e := notify.Event{Type: notify.TypeNotification, Content: &notify.Content{Text: "hello", Subject: "hi"}}
	c, err := r.Render(&e, notify.ChannelEmail, "en", "")
	if err != nil || c.Text != "hello" || c.Subject != "hi" {
		t.Fatalf("got %+v, %v", c, err)
	}
}

// TestRenderingSharesParts asks one Rendering for every channel, forwards and then
// backwards, and expects what a fresh Render gives each channel: the parts it keeps
// for the next channel must be the ones that channel would have rendered.
func TestRenderingSharesParts(t *testing.T) {
	t.Parallel()
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	backwards := slices.Clone(notify.AllChannels)
	slices.Reverse(backwards)
	for _, locale := range notify.Locales {
		for _, typ := range notify.KnownTypes {
			e := sampleEvent(typ)
			for _, order := range [][]notify.Channel{notify.AllChannels, backwards} {
				x, err := r.Prepare(&e, locale, "Europe/London")
				if err != nil {
					t.Fatal(err)
				}
				for _, ch := range order {
					got, err := x.Channel(ch)
					if err != nil {
						t.Fatal(err)
					}
					want, err := r.Render(&e, ch, locale, "Europe/London")
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s %s %s after %v: got %+v, want %+v", locale, typ, ch, order, got, want)
					}
				}
			}
		}
	}
}

func TestPrepareUnknownTemplateIsPoison(t *testing.T) {
	t.Parallel()
	r, _ := New(Config{})
	e := notify.Event{Type: "card.frozen", Template: "card.frozen"}
	if _, err := r.Prepare(&e, "en", ""); notify.ClassOf(err) != notify.ClassPoison {
		t.Fatalf("got %v, want poison", err)
	}
}
