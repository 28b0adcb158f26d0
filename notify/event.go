// Package notify is Herald's domain: events from the banking core, the messages and
// deliveries they fan out to, recipients and their preferences. Pure code, no I/O.
package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/heraldhq/herald/internal/jsonx"
)

// Event types Herald knows templates for. Other types are accepted when they carry
// explicit channels and content (ad-hoc notifications).
const (
	TypeTransactionPosted   = "transaction.posted"
	TypeTransactionDeclined = "transaction.declined"
	TypeBalanceLow          = "balance.low"
	TypeOTPRequested        = "otp.requested"
	TypeSecurityLogin       = "security.login"
	// TypeNotification is an ad-hoc notification sent through the API: it names its
	// channels and either a template or raw content.
	TypeNotification = "notification"
)

// KnownTypes lists the event types with built-in templates.
var KnownTypes = []string{
	TypeTransactionPosted, TypeTransactionDeclined, TypeBalanceLow,
	TypeOTPRequested, TypeSecurityLogin,
}

// Event is one business event written by the banking core into the outbox.
//
// Amounts are decimal strings on the wire and decimals in memory: money is never a
// float. Fields Herald does not know are kept in Extra and survive a round trip.
type Event struct {
	ID           string           `json:"event_id"`
	Type         string           `json:"type"`
	OccurredAt   time.Time        `json:"occurred_at"`
	AccountID    string           `json:"account_id,omitempty"`
	CustomerID   string           `json:"customer_id,omitempty"`
	Amount       *decimal.Decimal `json:"amount,omitempty"`
	BalanceAfter *decimal.Decimal `json:"balance_after,omitempty"`
	Currency     string           `json:"currency,omitempty"`
	Direction    string           `json:"direction,omitempty"`
	Counterparty string           `json:"counterparty,omitempty"`
	Merchant     string           `json:"merchant,omitempty"`
	Contact      *Contacts        `json:"contact,omitempty"`
	Locale       string           `json:"locale,omitempty"`

	// Ad-hoc notifications (type "notification") and explicit overrides.
	Channels []Channel         `json:"channels,omitempty"`
	Template string            `json:"template,omitempty"`
	Data     map[string]any    `json:"data,omitempty"`
	Content  *Content          `json:"content,omitempty"`
	Extra    map[string]any    `json:"-"`
	raw      map[string][]byte // unknown fields exactly as received
	numbers  []string          // money fields that arrived as JSON numbers
}

// knownFields are the JSON names decoded into Event's fields.
var knownFields = map[string]bool{
	"event_id": true, "type": true, "occurred_at": true, "account_id": true,
	"customer_id": true, "amount": true, "balance_after": true, "currency": true,
	"direction": true, "counterparty": true, "merchant": true, "contact": true,
	"locale": true, "channels": true, "template": true, "data": true, "content": true,
}

type eventAlias Event

// UnmarshalJSON decodes an event and keeps unknown fields.
func (e *Event) UnmarshalJSON(b []byte) error {
	var a eventAlias
	if err := jsonx.Unmarshal(b, &a); err != nil {
		return err
	}
	all := make(map[string]json.RawMessage, len(knownFields))
	if err := jsonx.Unmarshal(b, &all); err != nil {
		return err
	}
	*e = Event(a)
	for _, k := range []string{"amount", "balance_after"} {
		if v, ok := all[k]; ok && len(v) > 0 && v[0] != '"' && string(v) != "null" {
			e.numbers = append(e.numbers, k)
		}
	}
	for k, v := range all {
		if knownFields[k] {
			continue
		}
		if e.raw == nil {
			e.raw = map[string][]byte{}
			e.Extra = map[string]any{}
		}
		e.raw[k] = v
		var x any
		if err := jsonx.Unmarshal(v, &x); err == nil {
			e.Extra[k] = x
		}
	}
	return nil
}

// MarshalJSON encodes the event with its unknown fields, keys in a stable order.
func (e Event) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(eventAlias(e))
	if err != nil {
		return nil, err
	}
	if len(e.raw) == 0 && len(e.Extra) == 0 {
		return b, nil
	}
	extra := map[string][]byte{}
	for k, v := range e.Extra {
		if knownFields[k] {
			continue
		}
		if raw, ok := e.raw[k]; ok {
			extra[k] = raw
			continue
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding extra field %q: %w", k, err)
		}
		extra[k] = vb
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// ExtraString returns an unknown field as a string ("" when absent or not a string).
func (e *Event) ExtraString(name string) string {
	if v, ok := e.Data[name].(string); ok {
		return v
	}
	if v, ok := e.Extra[name].(string); ok {
		return v
	}
	return ""
}

// Critical reports whether the event belongs to the critical lane.
func (e *Event) Critical() bool {
	t := e.Type
	if t == TypeNotification {
		t = e.Template
	}
	return t == TypeOTPRequested || t == TypeSecurityLogin || strings.HasPrefix(t, "fraud.")
}

// Lane is the priority lane of the event's deliveries.
func (e *Event) Lane() Lane {
	if e.Critical() {
		return LaneCritical
	}
	return LaneNormal
}

// TemplateName is the template the event is rendered with.
func (e *Event) TemplateName() string {
	if e.Template != "" {
		return e.Template
	}
	return e.Type
}

// DecodeEvent decodes and validates an event payload. Errors are poison: the payload
// will never become valid by retrying.
func DecodeEvent(payload []byte) (Event, error) {
	var e Event
	// UnmarshalJSON itself, not json.Unmarshal, which would scan the payload once more
	// to validate it before calling it: UnmarshalJSON's own decodes validate.
	if err := e.UnmarshalJSON(payload); err != nil {
		return Event{}, Poison(fmt.Errorf("decoding event: %w", err))
	}
	if err := e.Validate(); err != nil {
		return Event{}, Poison(err)
	}
	return e, nil
}

// Validate checks the event against the outbox contract and returns every problem
// found as a *ValidationError.
func (e *Event) Validate() error {
	var v ValidationError
	for _, f := range e.numbers {
		v.Add(f, "must be a decimal string such as \"12.50\", not a JSON number")
	}
	if strings.TrimSpace(e.ID) == "" {
		v.Add("event_id", "is required")
	} else if len(e.ID) > 128 {
		v.Add("event_id", "must be at most 128 characters")
	}
	if e.Type == "" {
		v.Add("type", "is required")
	}
	if e.OccurredAt.IsZero() {
		v.Add("occurred_at", "is required (RFC 3339 time)")
	}
	if e.Locale != "" && !SupportedLocale(e.Locale) {
		v.Add("locale", "must be one of "+strings.Join(Locales, ", "))
	}
	for i, c := range e.Channels {
		if !c.Valid() {
			v.Add(fmt.Sprintf("channels[%d]", i), fmt.Sprintf("unknown channel %q", c))
		}
	}
	if e.Contact != nil {
		e.Contact.validate(&v, "contact.")
	}
	needCustomer := func() {
		if e.CustomerID == "" && (e.Contact == nil || e.Contact.Empty()) {
			v.Add("customer_id", "is required (or an inline contact)")
		}
	}
	needMoney := func(field string, d *decimal.Decimal) {
		if d == nil {
			v.Add(field, "is required (decimal string)")
		}
		if !validCurrency(e.Currency) {
			v.Add("currency", "must be an ISO 4217 code such as CNY")
		}
	}
	switch e.Type {
	case TypeTransactionPosted, TypeTransactionDeclined:
		needCustomer()
		if e.AccountID == "" {
			v.Add("account_id", "is required")
		}
		needMoney("amount", e.Amount)
		if e.Amount != nil && e.Amount.IsNegative() {
			v.Add("amount", "must not be negative; use direction")
		}
		if e.Direction != "" && e.Direction != "debit" && e.Direction != "credit" {
			v.Add("direction", `must be "debit" or "credit"`)
		}
	case TypeBalanceLow:
		needCustomer()
		if e.AccountID == "" {
			v.Add("account_id", "is required")
		}
		needMoney("balance_after", e.BalanceAfter)
	case TypeOTPRequested:
		needCustomer()
		if e.ExtraString("code") == "" {
			v.Add("code", "is required for otp.requested")
		}
	case TypeSecurityLogin:
		needCustomer()
	case TypeNotification:
		needCustomer()
		if len(e.Channels) == 0 {
			v.Add("channels", "at least one channel is required")
		}
		if e.Template == "" && (e.Content == nil || e.Content.Empty()) {
			v.Add("template", "a template or content is required")
		}
		if e.Template != "" && !KnownTemplate(e.Template) {
			v.Add("template", fmt.Sprintf("unknown template %q", e.Template))
		}
	default:
		if e.Type != "" && (len(e.Channels) == 0 || e.Content == nil || e.Content.Empty()) {
			v.Add("type", fmt.Sprintf("unknown event type %q needs channels and content", e.Type))
		}
	}
	if e.Amount != nil && e.Currency != "" && !validCurrency(e.Currency) {
		v.Add("currency", "must be an ISO 4217 code such as CNY")
	}
	return v.OrNil()
}

// KnownTemplate reports whether name has built-in templates.
func KnownTemplate(name string) bool {
	for _, t := range KnownTypes {
		if t == name {
			return true
		}
	}
	return false
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for _, r := range c {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// Content is rendered (or raw, ad-hoc) message content for one channel.
type Content struct {
	Subject string            `json:"subject,omitempty"`
	Text    string            `json:"text,omitempty"`
	HTML    string            `json:"html,omitempty"`
	Title   string            `json:"title,omitempty"`
	Data    map[string]string `json:"data,omitempty"` // WeChat template data, push data
}

// InboxTitle is the title of the content's in-app inbox message: its title, or else
// its subject.
func (c *Content) InboxTitle() string {
	if c.Title != "" {
		return c.Title
	}
	return c.Subject
}

// Empty reports whether the content has nothing to send.
func (c *Content) Empty() bool {
	return c.Subject == "" && c.Text == "" && c.HTML == "" && c.Title == "" && len(c.Data) == 0
}

// Locales Herald renders.
var Locales = []string{"zh-CN", "en"}

// SupportedLocale reports whether l is one of Locales.
func SupportedLocale(l string) bool {
	return l == "zh-CN" || l == "en"
}
