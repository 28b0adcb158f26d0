package jsonx_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/internal/jsonx"
	"github.com/heraldhq/herald/notify"
)

// inputs are JSON texts on which decoders are known to disagree: trailing data,
// invalid UTF-8, lone surrogates, duplicate and differently cased keys, wrong types,
// numbers where strings belong, nesting, truncation.
var inputs = []string{
	`{"delivery_id":"d1","event_id":"e1","channel":"sms","address":"+8613800138000","content":{"text":"尊敬的客户\n\u003cb\u003e"},"occurred_at":"2026-11-22T10:00:00Z"}`,
	`{"delivery_id":"d1"} trailing`,
	`{"delivery_id":"d1"}{"delivery_id":"d2"}`,
	`{"delivery_id":"d1",}`,
	`{"delivery_id":"d1" "event_id":"e1"}`,
	`{"delivery_id":"\xff\xfe"}`,
	`{"delivery_id":"\ud800"}`,
	`{"delivery_id":"\ud83d\ude00 \u00e9"}`,
	`{"delivery_id":"a","delivery_id":"b"}`,
	`{"DELIVERY_ID":"upper","Event_Id":"mixed"}`,
	`{"delivery_id":12}`,
	`{"delivery_id":null,"content":null,"fallback":null}`,
	`{"occurred_at":"yesterday"}`,
	`{"occurred_at":1700000000}`,
	`{"expires_at":"2026-11-22T10:00:00+08:00","fallback":{"channel":"email","fallback":{"channel":"sms"}}}`,
	`{"content":{"text":"x","unknown":[1,2,{"a":[]}]},"extra":{"deep":[[[[[]]]]]}}`,
	`{"delivery_id":"d1"`,
	`{"delivery_id":"\u0000"}`,
	`[]`,
	`"a string"`,
	`null`,
	``,
	` {"delivery_id" : "spaced" } `,
	`{"event_id":"e1","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","amount":"12.50","balance_after":10.5,"currency":"CNY","memo":{"k":[1,"2",true,null]},"n":1e400}`,
	`{"event_id":"e1","amount":"1e3","channels":["sms","pigeon"],"contact":{"phone":"+8613800138000","push_tokens":["t1",""]}}`,
	`{"event_id":"e1","amount":{"value":"1"}}`,
	`{"event_id":"e1","occurred_at":"2026-11-22T10:00:00Z","account_id":123}`,
	`{"account_id":"6222020200112233","tags":"a"}`,
	`{"account_id":6222020200112233}`,
	`{"event_id":"e1","lane":"critical","locale":"en","customer_id":"c\"quoted\\"}`,
}

// TestUnmarshalAgreesWithEncodingJSON decodes each input into a delivery message, an
// event and an untyped value with jsonx and with encoding/json: the two must accept
// and reject the same inputs, and decode the accepted ones to equal values.
func TestUnmarshalAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range inputs {
		agree(t, []byte(in))
	}
}

func FuzzUnmarshalAgreesWithEncodingJSON(f *testing.F) {
	for _, in := range inputs {
		f.Add([]byte(in))
	}
	f.Fuzz(agree)
}

func agree(t *testing.T, in []byte) {
	t.Helper()
	news := []func() any{
		func() any { return new(notify.Message) },
		func() any { return new(notify.Event) },
		func() any { return new(any) },
		func() any { return new(map[string]json.RawMessage) },
		func() any { return new(message.Metadata) },
	}
	for _, mk := range news {
		got, want := mk(), mk()
		gotErr, wantErr := jsonx.Unmarshal(in, got), json.Unmarshal(in, want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%T from %q: jsonx error %v, encoding/json error %v", got, in, gotErr, wantErr)
		}
		if gotErr != nil {
			if gotErr.Error() != wantErr.Error() {
				t.Fatalf("%T from %q: jsonx error %q, encoding/json error %q", got, in, gotErr, wantErr)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%T from %q:\njsonx         %#v\nencoding/json %#v", got, in, got, want)
		}
	}
}

// TestMarshalAgreesWithEncodingJSON encodes delivery messages with HTML, invalid
// UTF-8, control and line-separator characters: the bytes must be encoding/json's.
func TestMarshalAgreesWithEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	for _, s := range []string{"<p>尊敬的客户 & co</p>", "bad \xff utf-8", "ctl \x00\x1f\t\n", "ls \u2028 ps \u2029", `quote " back \ slash`} {
		m := notify.Message{DeliveryID: "d1", EventID: s, Channel: notify.ChannelEmail, Address: notify.Address(s),
			Content: notify.Content{Subject: s, Text: s, HTML: s}, OccurredAt: at, ExpiresAt: &at,
			Fallback: &notify.Message{DeliveryID: "d2", Channel: notify.ChannelSMS, Content: notify.Content{Text: s}}}
		got, err := jsonx.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%q:\njsonx         %s\nencoding/json %s", s, got, want)
		}
	}
}
