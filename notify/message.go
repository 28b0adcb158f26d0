package notify

import (
	"log/slog"
	"time"
)

// Status of a delivery.
type Status string

// Delivery statuses. Terminal ones end the delivery's life.
const (
	StatusQueued      Status = "queued"
	StatusSending     Status = "sending"
	StatusSent        Status = "sent"
	StatusDelivered   Status = "delivered"
	StatusUndelivered Status = "undelivered"
	StatusFailed      Status = "failed"
	StatusExpired     Status = "expired"
	StatusPoisoned    Status = "poisoned"
)

// AllStatuses lists every status.
var AllStatuses = []Status{StatusQueued, StatusSending, StatusSent, StatusDelivered,
	StatusUndelivered, StatusFailed, StatusExpired, StatusPoisoned}

// Terminal reports whether no further work happens on a delivery in status s.
func (s Status) Terminal() bool {
	switch s {
	case StatusSent, StatusDelivered, StatusUndelivered, StatusFailed, StatusExpired, StatusPoisoned:
		return true
	}
	return false
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, k := range AllStatuses {
		if s == k {
			return true
		}
	}
	return false
}

// Message is one rendered message for one (channel, address): what the fan-out
// publishes and a channel handler hands to a provider.
type Message struct {
	DeliveryID  string    `json:"delivery_id"`
	EventID     string    `json:"event_id"`
	EventType   string    `json:"event_type"`
	Channel     Channel   `json:"channel"`
	Lane        Lane      `json:"lane"`
	RecipientID string    `json:"recipient_id,omitempty"`
	Address     Address   `json:"address"`
	Locale      string    `json:"locale"`
	Content     Content   `json:"content"`
	OccurredAt  time.Time `json:"occurred_at"`
	// ExpiresAt: a message still unsent then is not sent at all (status expired).
	// Set for one-time passwords, where stale is worse than late.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Fallback is the same notification rendered for the recipient's fallback
	// channel: queued if this message fails permanently.
	Fallback *Message `json:"fallback,omitempty"`
}

// LogValue keeps the address masked in every log line.
func (m Message) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("delivery_id", m.DeliveryID),
		slog.String("event_id", m.EventID),
		slog.String("channel", string(m.Channel)),
		slog.Any("address", m.Address),
	)
}

// Report is a provider's delivery report (an SMS delivery receipt): whether the
// message reached the handset. Reference is the delivery id Herald sent, MessageID the
// provider's id; either identifies the delivery.
type Report struct {
	Reference string
	MessageID string
	Delivered bool
	Reason    string
}

// Receipt is what a provider says when it accepts a message.
type Receipt struct {
	Provider          string
	ProviderMessageID string
	// Reports is set when the provider may later report on the message (an SMPP
	// delivery receipt, an HTTP gateway's receipt), naming it by ProviderMessageID
	// alone or by the delivery id: Herald then keeps the id for the report to find the
	// delivery by, and applies a report that came before the send was recorded.
	Reports bool
}

// Delivery is the record of one message's life.
type Delivery struct {
	ID                string     `json:"id"`
	EventID           string     `json:"event_id"`
	EventType         string     `json:"event_type"`
	Channel           Channel    `json:"channel"`
	Lane              Lane       `json:"lane"`
	RecipientID       string     `json:"recipient_id,omitempty"`
	Address           Address    `json:"address"`
	Status            Status     `json:"status"`
	Attempts          int        `json:"attempts"`
	LastError         string     `json:"last_error,omitempty"`
	Provider          string     `json:"provider,omitempty"`
	ProviderMessageID string     `json:"provider_message_id,omitempty"`
	OccurredAt        time.Time  `json:"occurred_at"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	SentAt            *time.Time `json:"sent_at,omitempty"`
	// FallbackOf is the delivery this one replaces: it was created because that one
	// failed and the recipient has a fallback channel for it.
	FallbackOf string `json:"fallback_of,omitempty"`
}
