package notify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Channel is a way to reach a customer.
type Channel string

// Channels Herald delivers on.
const (
	ChannelSMS     Channel = "sms"
	ChannelEmail   Channel = "email"
	ChannelInApp   Channel = "inapp"
	ChannelWeChat  Channel = "wechat"
	ChannelPush    Channel = "push"
	ChannelWebhook Channel = "webhook"
)

// InboxProvider names the in-app inbox in delivery records and receipts.
const InboxProvider = "inbox"

// AllChannels lists every channel, in fan-out order.
var AllChannels = []Channel{ChannelSMS, ChannelEmail, ChannelInApp, ChannelWeChat, ChannelPush, ChannelWebhook}

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool {
	for _, k := range AllChannels {
		if c == k {
			return true
		}
	}
	return false
}

// Lane is a priority lane. Critical messages (OTP, security, fraud) never wait behind
// normal traffic.
type Lane string

// Lanes.
const (
	LaneCritical Lane = "critical"
	LaneNormal   Lane = "normal"
)

// Contacts are the addresses of one recipient.
type Contacts struct {
	Phone        Phone    `json:"phone,omitempty"`
	Email        Email    `json:"email,omitempty"`
	WeChatOpenID string   `json:"wechat_openid,omitempty"`
	PushTokens   []string `json:"push_tokens,omitempty"`
	WebhookURL   string   `json:"webhook_url,omitempty"`
}

var (
	phoneRE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	emailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// Empty reports whether no address is set.
func (c *Contacts) Empty() bool {
	return c.Phone == "" && c.Email == "" && c.WeChatOpenID == "" && len(c.PushTokens) == 0 && c.WebhookURL == ""
}

func (c *Contacts) validate(v *ValidationError, prefix string) {
	if c.Phone != "" && !phoneRE.MatchString(string(c.Phone)) {
		v.Add(prefix+"phone", "must be E.164, e.g. +8613800138000")
	}
	if c.Email != "" && !emailRE.MatchString(string(c.Email)) {
		v.Add(prefix+"email", "must be an email address")
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.Add(prefix+"webhook_url", "must be an http(s) URL")
		}
	}
	for i, t := range c.PushTokens {
		if strings.TrimSpace(t) == "" {
			v.Add(fmt.Sprintf("%spush_tokens[%d]", prefix, i), "must not be empty")
		}
	}
}

// Addresses returns the addresses of c on channel ch; the in-app channel is addressed
// by the recipient id.
func (c *Contacts) Addresses(ch Channel, recipientID string) []string {
	switch ch {
	case ChannelSMS:
		return nonEmpty(string(c.Phone))
	case ChannelEmail:
		return nonEmpty(string(c.Email))
	case ChannelWeChat:
		return nonEmpty(c.WeChatOpenID)
	case ChannelPush:
		return c.PushTokens
	case ChannelWebhook:
		return nonEmpty(c.WebhookURL)
	case ChannelInApp:
		return nonEmpty(recipientID)
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// Preferences say which channels a recipient wants per event type.
type Preferences struct {
	// Channels per event type; the key "*" applies to types not listed. Absent means
	// Herald's defaults (DefaultChannels).
	Channels map[string][]Channel `json:"channels,omitempty"`
	// MinAmount: transaction alerts below this amount are not sent. Nil sends all.
	MinAmount *decimal.Decimal `json:"min_amount,omitempty"`
	// Fallback names, per channel, the channel to try when a delivery on it fails
	// permanently or runs out of retries, e.g. {"push": "sms"}.
	Fallback map[Channel]Channel `json:"fallback,omitempty"`
}

// Recipient is a customer in the directory.
type Recipient struct {
	ID          string      `json:"id"`
	Contacts    Contacts    `json:"contacts"`
	Locale      string      `json:"locale"`
	TimeZone    string      `json:"time_zone"`
	Preferences Preferences `json:"preferences"`
	UpdatedAt   time.Time   `json:"updated_at"`
}

// Validate checks a recipient record.
func (r *Recipient) Validate() error {
	var v ValidationError
	if strings.TrimSpace(r.ID) == "" || len(r.ID) > 128 {
		v.Add("id", "is required (at most 128 characters)")
	}
	r.Contacts.validate(&v, "contacts.")
	if r.Locale != "" && !SupportedLocale(r.Locale) {
		v.Add("locale", "must be one of "+strings.Join(Locales, ", "))
	}
	if r.TimeZone != "" {
		if _, err := time.LoadLocation(r.TimeZone); err != nil {
			v.Add("time_zone", "must be an IANA time zone such as Asia/Shanghai")
		}
	}
	for typ, chans := range r.Preferences.Channels {
		for i, c := range chans {
			if !c.Valid() {
				v.Add(fmt.Sprintf("preferences.channels.%s[%d]", typ, i), fmt.Sprintf("unknown channel %q", c))
			}
		}
	}
	for from, to := range r.Preferences.Fallback {
		switch {
		case !from.Valid():
			v.Add("preferences.fallback", fmt.Sprintf("unknown channel %q", from))
		case !to.Valid():
			v.Add("preferences.fallback."+string(from), fmt.Sprintf("unknown channel %q", to))
		case from == to:
			v.Add("preferences.fallback."+string(from), "must name another channel")
		}
	}
	if r.Preferences.MinAmount != nil && r.Preferences.MinAmount.IsNegative() {
		v.Add("preferences.min_amount", "must not be negative")
	}
	return v.OrNil()
}

// DefaultChannels are used when a recipient has no preference for an event type.
var DefaultChannels = map[string][]Channel{
	TypeTransactionPosted:   {ChannelSMS, ChannelEmail, ChannelInApp},
	TypeTransactionDeclined: {ChannelSMS, ChannelEmail, ChannelInApp, ChannelPush},
	TypeBalanceLow:          {ChannelSMS, ChannelEmail, ChannelInApp},
	TypeOTPRequested:        {ChannelSMS},
	TypeSecurityLogin:       {ChannelSMS, ChannelEmail, ChannelPush},
}

// Target is one (channel, address) a message goes to.
type Target struct {
	Channel Channel
	Address string
}

// Plan decides where an event goes for a recipient: the channels from the event (if it
// names them), else the recipient's preferences, else the defaults; only channels the
// recipient has an address for; nothing for transaction alerts under the threshold.
// It returns the targets and, when nothing is sent, why.
func Plan(e *Event, r *Recipient) ([]Target, string) {
	if (e.Type == TypeTransactionPosted || e.Type == TypeTransactionDeclined) &&
		r.Preferences.MinAmount != nil && e.Amount != nil && e.Amount.LessThan(*r.Preferences.MinAmount) {
		return nil, "amount below the recipient's minimum " + r.Preferences.MinAmount.String()
	}
	chans := e.Channels
	if len(chans) == 0 {
		var ok bool
		if chans, ok = r.Preferences.Channels[e.Type]; !ok {
			if chans, ok = r.Preferences.Channels["*"]; !ok {
				chans = DefaultChannels[e.Type]
			}
		}
	}
	var out []Target
	seen := map[Target]bool{}
	for _, ch := range chans {
		for _, a := range r.Contacts.Addresses(ch, r.ID) {
			t := Target{Channel: ch, Address: a}
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		return nil, "no address for the chosen channels"
	}
	return out, ""
}

// MergeContacts returns the directory contacts overridden by the inline ones.
func MergeContacts(dir Contacts, inline *Contacts) Contacts {
	if inline == nil {
		return dir
	}
	out := dir
	if inline.Phone != "" {
		out.Phone = inline.Phone
	}
	if inline.Email != "" {
		out.Email = inline.Email
	}
	if inline.WeChatOpenID != "" {
		out.WeChatOpenID = inline.WeChatOpenID
	}
	if len(inline.PushTokens) > 0 {
		out.PushTokens = inline.PushTokens
	}
	if inline.WebhookURL != "" {
		out.WebhookURL = inline.WebhookURL
	}
	return out
}

// DeliveryID is the deterministic id of the delivery of event eventID, which occurred
// at occurredAt, on channel ch to address: the same inputs always give the same id, so
// redelivered events are absorbed. The id is "dlv_" and 32 hex digits: the event's
// time in milliseconds (12 digits), then 80 bits of a hash of the three. Ids therefore
// sort by the time of their events, so the deliveries of recent events sit together
// in the table's primary-key index: inserts and the updates that look a delivery up by
// id touch a few pages at its end instead of one random page each (docs/performance.md,
// "time-ordered delivery ids"). Ids made before this scheme are a hash alone; the
// fan-out and the delivery handler find a delivery by event, channel and address when
// its id differs (the fan-out's batch in adapters/sqlstore, handlers.Deliver).
func DeliveryID(eventID string, occurredAt time.Time, ch Channel, address string) string {
	h := sha256.New()
	h.Write([]byte(eventID))
	h.Write([]byte{0})
	h.Write([]byte(ch))
	h.Write([]byte{0})
	h.Write([]byte(address))
	var b [18]byte                                                            // 8 bytes of time, of which the id keeps the low 6, then 10 of hash
	binary.BigEndian.PutUint64(b[:8], uint64(max(occurredAt.UnixMilli(), 0))) //nolint:gosec // clamped at 0
	copy(b[8:], h.Sum(nil)[:10])
	return "dlv_" + hex.EncodeToString(b[2:])
}
