// Package webhook delivers notifications as signed HTTP POSTs to the recipient's URL.
//
// Each request carries Herald-Timestamp (Unix seconds) and Herald-Signature:
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)). Receivers check the
// signature and reject timestamps older than a few minutes (replay protection);
// docs/webhooks.md has the recipe, and Verify does it in Go.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/heraldhq/herald/adapters/httpclass"
	"github.com/heraldhq/herald/internal/hmacsig"
	"github.com/heraldhq/herald/notify"
)

// Headers Herald sets.
const (
	HeaderSignature = "Herald-Signature"
	HeaderTimestamp = "Herald-Timestamp"
	HeaderDelivery  = "Herald-Delivery-Id"
)

// Config of the webhook provider.
type Config struct {
	Name string
	// Secret signs every request. Required.
	Secret string
	// Timeout of one request. Default 10s.
	Timeout time.Duration
	// Client overrides the HTTP client (private CAs, proxies).
	Client *http.Client
}

// Provider posts webhooks.
type Provider struct {
	cfg    Config
	client *http.Client
	now    func() time.Time
}

// New returns the provider.
func New(cfg Config) (*Provider, error) {
	if len(cfg.Secret) < 16 {
		return nil, errors.New("webhook: a secret of at least 16 characters is required")
	}
	if cfg.Name == "" {
		cfg.Name = "webhook"
	}
	var c *http.Client
	cfg.Timeout, c = httpclass.Defaults(cfg.Timeout, cfg.Client)
	return &Provider{cfg: cfg, client: c, now: time.Now}, nil
}

// Payload is the JSON body of a webhook.
type Payload struct {
	DeliveryID string            `json:"delivery_id"`
	EventID    string            `json:"event_id"`
	EventType  string            `json:"event_type"`
	OccurredAt time.Time         `json:"occurred_at"`
	Locale     string            `json:"locale,omitempty"`
	Subject    string            `json:"subject,omitempty"`
	Title      string            `json:"title,omitempty"`
	Text       string            `json:"text,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
}

// Sign returns the Herald-Signature value of body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	return "v1=" + hmacsig.Hex(secret, ts, body)
}

// Verify checks a received webhook: the signature over timestamp and body, and a
// timestamp no further than tolerance from now.
func Verify(secret, timestamp, signature string, body []byte, tolerance time.Duration) error {
	err := hmacsig.Check(timestamp, signature, tolerance, func(ts int64) string { return Sign(secret, ts, body) })
	switch {
	case errors.Is(err, hmacsig.ErrStale):
		return errors.New("webhook: timestamp outside the tolerance (replayed or clock skew)")
	case err != nil:
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

// Send implements handlers.Provider.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	u, err := url.Parse(string(m.Address))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return notify.Receipt{}, notify.Permanent(errors.New("webhook: the address is not an http(s) URL"))
	}
	body, err := json.Marshal(Payload{DeliveryID: m.DeliveryID, EventID: m.EventID, EventType: m.EventType,
		OccurredAt: m.OccurredAt, Locale: m.Locale, Subject: m.Content.Subject, Title: m.Content.Title,
		Text: m.Content.Text, Data: m.Content.Data})
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	ts := p.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(p.cfg.Secret, ts, body))
	req.Header.Set(HeaderDelivery, m.DeliveryID)
	req.Header.Set("Idempotency-Key", m.DeliveryID)
	resp, err := p.client.Do(req) //nolint:gosec // the URL is the recipient's registered webhook
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	if err := httpclass.Check("webhook receiver", resp); err != nil {
		return notify.Receipt{}, err
	}
	return notify.Receipt{Provider: p.cfg.Name, ProviderMessageID: m.DeliveryID}, nil
}
