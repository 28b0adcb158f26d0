// Package inbox is the in-app channel's provider: it puts messages into the recipient's
// inbox table, served by the API.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/heraldhq/herald/notify"
)

// Store adds inbox messages.
type Store interface {
	Add(ctx context.Context, recipientID, deliveryID, eventType, title, body string) (int64, error)
}

// Provider delivers in-app messages.
type Provider struct{ store Store }

// New returns the in-app provider.
func New(store Store) (*Provider, error) {
	if store == nil {
		return nil, errors.New("inbox: a store is required")
	}
	return &Provider{store: store}, nil
}

// Send adds the message to the inbox of its address (the recipient id). Sending the
// same delivery twice keeps one inbox message.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	id, err := p.store.Add(ctx, string(m.Address), m.DeliveryID, m.EventType, m.Content.InboxTitle(), m.Content.Text)
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("inbox: %w", err)
	}
	return notify.Receipt{Provider: notify.InboxProvider, ProviderMessageID: strconv.FormatInt(id, 10)}, nil
}
