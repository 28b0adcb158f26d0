package router_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/router"
)

func TestOrderKey(t *testing.T) {
	withMD := func(payload string, md map[string]string) *message.Message {
		m := message.NewMessage("u", []byte(payload))
		for k, v := range md {
			m.Metadata.Set(k, v)
		}
		return m
	}
	for _, c := range []struct {
		name, topic string
		m           *message.Message
		want        string
	}{
		{"outbox metadata", "events", withMD(`{"account_id":"p"}`, map[string]string{"account_id": "m"}), "m"},
		{"outbox plain insert", "events", withMD(`{"account_id":"p"}`, nil), "p"},
		{"critical outbox", "events.critical", withMD(`{"account_id":"p"}`, nil), "p"},
		{"undecodable", "events", withMD(`nope`, nil), ""},
		{"delivery", "deliveries.sms", withMD(`{"account_id":"p"}`, map[string]string{"recipient_id": "r", "account_id": "m"}), "r"},
	} {
		if got := router.OrderKey(c.topic, c.m); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
