// Package httpgw sends SMS through an HTTP gateway: a JSON or form POST whose field
// names are configurable, signed with HMAC-SHA256, carrying the delivery id as the
// client reference. Delivery receipts come back to POST /v1/receipts/{provider},
// signed the same way, and move deliveries to delivered or undelivered.
package httpgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/adapters/httpclass"
	"github.com/heraldhq/herald/internal/hmacsig"
	"github.com/heraldhq/herald/notify"
)

// Headers of a signed request or receipt.
const (
	HeaderSignature = "X-Signature"
	HeaderTimestamp = "X-Timestamp"
)

// Config of a gateway.
type Config struct {
	// Name identifies the provider (receipts arrive at /v1/receipts/{Name}).
	Name string
	// URL the messages are POSTed to.
	URL string
	// Format of the request body: json (default) or form.
	Format string
	// Field names of the request. Defaults: to, text, reference, sender.
	ToField, TextField, ReferenceField, SenderField string
	// Sender (a short code or alphanumeric sender id); omitted when empty.
	Sender string
	// Extra fields sent with every request (an account id, a route).
	Extra map[string]string
	// Secret signs requests (X-Timestamp, X-Signature = hex HMAC-SHA256 of
	// timestamp + "." + body) and verifies receipts. Empty: unsigned.
	Secret string
	// MessageIDField is the field of the JSON answer holding the gateway's message id.
	// Default message_id.
	MessageIDField string
	Timeout        time.Duration
	Client         *http.Client
}

// Provider is one gateway.
type Provider struct {
	cfg    Config
	client *http.Client
}

// New checks cfg and returns the provider.
func New(cfg Config) (*Provider, error) {
	u, err := url.Parse(cfg.URL)
	if cfg.Name == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("sms gateway: a name and an http(s) url are required")
	}
	if cfg.Format == "" {
		cfg.Format = "json"
	}
	if cfg.Format != "json" && cfg.Format != "form" {
		return nil, fmt.Errorf("sms gateway %s: format must be json or form", cfg.Name)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.ToField, "to")
	def(&cfg.TextField, "text")
	def(&cfg.ReferenceField, "reference")
	def(&cfg.SenderField, "sender")
	def(&cfg.MessageIDField, "message_id")
	var c *http.Client
	cfg.Timeout, c = httpclass.Defaults(cfg.Timeout, cfg.Client)
	return &Provider{cfg: cfg, client: c}, nil
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.cfg.Name }

// Sign returns the signature of body sent at ts with secret.
func Sign(secret string, ts int64, body []byte) string { return hmacsig.Hex(secret, ts, body) }

// Send implements handlers.Provider.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	fields := map[string]string{}
	for k, v := range p.cfg.Extra {
		fields[k] = v
	}
	fields[p.cfg.ToField] = string(m.Address)
	fields[p.cfg.TextField] = m.Content.Text
	fields[p.cfg.ReferenceField] = m.DeliveryID
	if p.cfg.Sender != "" {
		fields[p.cfg.SenderField] = p.cfg.Sender
	}
	var body []byte
	ctype := "application/json"
	if p.cfg.Format == "form" {
		v := url.Values{}
		for k, f := range fields {
			v.Set(k, f)
		}
		body, ctype = []byte(v.Encode()), "application/x-www-form-urlencoded"
	} else {
		body, _ = json.Marshal(fields)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Idempotency-Key", m.DeliveryID)
	if p.cfg.Secret != "" {
		ts := time.Now().Unix()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign(p.cfg.Secret, ts, body))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("sms gateway %s: %w", p.cfg.Name, err)
	}
	defer resp.Body.Close()
	if err := httpclass.Check("sms gateway "+p.cfg.Name, resp); err != nil {
		return notify.Receipt{}, err
	}
	var answer map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	id := fmt.Sprint(answer[p.cfg.MessageIDField])
	if answer[p.cfg.MessageIDField] == nil {
		id = ""
	}
	// Receipts need a secret (ParseReports); they name the message by its id or by the
	// delivery id sent as its reference.
	return notify.Receipt{Provider: p.cfg.Name, ProviderMessageID: id, Reports: p.cfg.Secret != ""}, nil
}

// Receipt is a gateway's delivery report.
type Receipt struct {
	// Reference is the delivery id Herald sent; MessageID the gateway's id. Either
	// identifies the delivery.
	Reference string `json:"reference"`
	MessageID string `json:"message_id"`
	// Status: delivered, or undelivered/failed/expired/rejected (all undelivered).
	Status string `json:"status"`
	Error  string `json:"error"`
}

// Delivered reports whether the receipt says the handset got the message.
func (r Receipt) Delivered() bool { return strings.EqualFold(r.Status, "delivered") }

// ParseReports verifies and decodes a receipt request: one JSON object or an array.
// Receipts must be signed: a gateway without a secret cannot report.
func (p *Provider) ParseReports(header http.Header, body []byte) ([]notify.Report, error) {
	if p.cfg.Secret == "" {
		return nil, errors.New("receipts need a secret: configure one for this gateway")
	}
	switch err := hmacsig.Check(header.Get(HeaderTimestamp), header.Get(HeaderSignature), 5*time.Minute,
		func(ts int64) string { return Sign(p.cfg.Secret, ts, body) }); {
	case errors.Is(err, hmacsig.ErrTimestamp):
		return nil, errors.New("missing or bad " + HeaderTimestamp)
	case errors.Is(err, hmacsig.ErrStale):
		return nil, errors.New(HeaderTimestamp + " outside five minutes")
	case err != nil:
		return nil, errors.New("bad " + HeaderSignature)
	}
	var rs []Receipt
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &rs); err != nil {
			return nil, fmt.Errorf("decoding receipts: %w", err)
		}
	} else {
		var r Receipt
		if err := json.Unmarshal(t, &r); err != nil {
			return nil, fmt.Errorf("decoding receipt: %w", err)
		}
		rs = []Receipt{r}
	}
	out := make([]notify.Report, len(rs))
	for i, r := range rs {
		if (r.Reference == "" && r.MessageID == "") || r.Status == "" {
			return nil, fmt.Errorf("receipt %d: reference or message_id, and status, are required", i)
		}
		out[i] = notify.Report{Reference: r.Reference, MessageID: r.MessageID, Delivered: r.Delivered(), Reason: r.Error}
		if !out[i].Delivered && out[i].Reason == "" {
			out[i].Reason = "gateway status " + r.Status
		}
	}
	return out, nil
}
