// Package templates renders Herald's messages: built-in texts per event type, locale
// and channel, with money, account numbers and times formatted for the reader.
package templates

import (
	"fmt"
	"html"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/heraldhq/herald/notify"
)

// Config of the Renderer.
type Config struct {
	// Bank is the sender name shown in messages. Default "Herald Bank".
	Bank string
	// DefaultLocale is used when neither the event nor the recipient has one. Default "zh-CN".
	DefaultLocale string
	// DefaultTimeZone is used when the recipient has none. Default "Asia/Shanghai".
	DefaultTimeZone string
	// OTPTTL is the validity stated in OTP messages. Default 5 minutes.
	OTPTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.Bank == "" {
		c.Bank = "Herald Bank"
	}
	if c.DefaultLocale == "" {
		c.DefaultLocale = "zh-CN"
	}
	if c.DefaultTimeZone == "" {
		c.DefaultTimeZone = "Asia/Shanghai"
	}
	if c.OTPTTL == 0 {
		c.OTPTTL = 5 * time.Minute
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if !notify.SupportedLocale(c.DefaultLocale) {
		return fmt.Errorf("templates: default locale %q must be one of %s", c.DefaultLocale, strings.Join(notify.Locales, ", "))
	}
	if _, err := time.LoadLocation(c.DefaultTimeZone); err != nil {
		return fmt.Errorf("templates: default time zone: %w", err)
	}
	if c.OTPTTL < 0 {
		return fmt.Errorf("templates: OTP TTL must not be negative")
	}
	return nil
}

type parsed struct {
	parts  [numParts]*template.Template // title, short text, body
	wechat map[string]*template.Template
}

// Renderer renders messages from the built-in templates. It is safe for concurrent use.
type Renderer struct {
	cfg       Config
	defaultTZ *time.Location
	byKey     map[string]*parsed // locale + "/" + type
	zones     sync.Map           // name -> *time.Location
}

// New parses every built-in template once.
func New(cfg Config) (*Renderer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tz, _ := time.LoadLocation(cfg.DefaultTimeZone)
	r := &Renderer{cfg: cfg, defaultTZ: tz, byKey: map[string]*parsed{}}
	for locale, types := range builtin {
		for typ, s := range types {
			name := locale + "/" + typ
			p := &parsed{wechat: map[string]*template.Template{}}
			var err error
			parse := func(part, text string) *template.Template {
				if err != nil {
					return nil
				}
				var t *template.Template
				t, err = template.New(name + "/" + part).Option("missingkey=zero").Parse(text)
				return t
			}
			p.parts = [numParts]*template.Template{partTitle: parse("title", s.Title), partShort: parse("short", s.Short),
				partBody: parse("body", s.Body)}
			for k, v := range s.WeChat {
				p.wechat[k] = parse("wechat."+k, v)
			}
			if err != nil {
				return nil, fmt.Errorf("parsing template %s: %w", name, err)
			}
			r.byKey[name] = p
		}
	}
	return r, nil
}

// Locale picks the locale for an event and recipient.
func (r *Renderer) Locale(e *notify.Event, recipientLocale string) string {
	switch {
	case notify.SupportedLocale(e.Locale):
		return e.Locale
	case notify.SupportedLocale(recipientLocale):
		return recipientLocale
	}
	return r.cfg.DefaultLocale
}

func (r *Renderer) location(name string) *time.Location {
	if name == "" {
		return r.defaultTZ
	}
	if l, ok := r.zones.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return r.defaultTZ
	}
	r.zones.Store(name, l)
	return l
}

// The words for a transaction's direction.
var (
	zhDirections = map[string]string{"credit": "入账", "debit": "支出"}
	enDirections = map[string]string{"credit": "credited", "debit": "debited"}
)

// view is what templates see.
type view struct {
	Bank, Amount, Balance, Account, AccountTail, Time, DirectionText string
	Counterparty, Merchant, Code, Reason, IP, Device                 string
	TTLMinutes                                                       int
	Data                                                             map[string]any
}

func (r *Renderer) view(e *notify.Event, locale string, loc *time.Location) view {
	v := view{
		Bank: r.cfg.Bank, Counterparty: e.Counterparty, Merchant: e.Merchant,
		Code: e.ExtraString("code"), Reason: e.ExtraString("reason"),
		IP: e.ExtraString("ip"), Device: e.ExtraString("device"),
		TTLMinutes: int(r.cfg.OTPTTL / time.Minute), Data: e.Data,
		Account: notify.MaskAccount(e.AccountID),
	}
	if len(e.AccountID) >= 4 {
		v.AccountTail = e.AccountID[len(e.AccountID)-4:]
	}
	if e.Amount != nil {
		v.Amount = FormatMoney(*e.Amount, e.Currency, locale)
	}
	if e.BalanceAfter != nil {
		v.Balance = FormatMoney(*e.BalanceAfter, e.Currency, locale)
	}
	t := e.OccurredAt.In(loc)
	if locale == "zh-CN" {
		v.Time = t.Format("2006-01-02 15:04")
		v.DirectionText = zhDirections[e.Direction]
		if v.DirectionText == "" {
			v.DirectionText = "变动"
		}
	} else {
		v.Time = t.Format("02 Jan 2006 15:04 MST")
		v.DirectionText = enDirections[e.Direction]
		if v.DirectionText == "" {
			v.DirectionText = "changed by"
		}
	}
	if v.Code == "" {
		if c, ok := e.Data["code"]; ok {
			v.Code = fmt.Sprint(c)
		}
	}
	return v
}

// Render produces the content of event e for one channel, in the given locale and the
// recipient's time zone. Raw content on an ad-hoc notification is used as is. For
// several channels of one event, Prepare renders each part once.
func (r *Renderer) Render(e *notify.Event, ch notify.Channel, locale, timeZone string) (notify.Content, error) {
	x, err := r.Prepare(e, locale, timeZone)
	if err != nil {
		return notify.Content{}, err
	}
	return x.Channel(ch)
}

// The parts of a template that several channels share.
const (
	partTitle = iota
	partShort
	partBody
	numParts
)

// Rendering is an event's content in one locale and time zone, for any of its channels.
// The fan-out asks it for each of an event's channels, and they share parts: the title
// (email, in-app, push), the short text (SMS, push, WeChat) and the body (email,
// in-app). Each part is executed once, on first use. Not safe for concurrent use.
type Rendering struct {
	name  string
	p     *parsed         // nil with raw content
	raw   *notify.Content // an ad-hoc notification's own content
	v     view
	parts [numParts]string
	done  [numParts]bool
}

// Prepare readies event e's content in the given locale and the recipient's time zone.
// An event type without a template in the locale is poison.
func (r *Renderer) Prepare(e *notify.Event, locale, timeZone string) (Rendering, error) {
	if e.Template == "" && e.Content != nil && !e.Content.Empty() {
		return Rendering{raw: e.Content}, nil
	}
	name := e.TemplateName()
	p, ok := r.byKey[locale+"/"+name]
	if !ok {
		return Rendering{}, notify.Poison(fmt.Errorf("no template %q for locale %s", name, locale))
	}
	return Rendering{name: name, p: p, v: r.view(e, locale, r.location(timeZone))}, nil
}

func (x *Rendering) exec(t *template.Template) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, x.v); err != nil {
		return "", notify.Poison(fmt.Errorf("rendering %s: %w", t.Name(), err))
	}
	return b.String(), nil
}

// part returns part i, executing its template the first time.
func (x *Rendering) part(i int) (string, error) {
	if !x.done[i] {
		s, err := x.exec(x.p.parts[i])
		if err != nil {
			return "", err
		}
		x.parts[i], x.done[i] = s, true
	}
	return x.parts[i], nil
}

// Channel returns the content for channel ch.
func (x *Rendering) Channel(ch notify.Channel) (notify.Content, error) {
	if x.raw != nil {
		return *x.raw, nil
	}
	var c notify.Content
	var err error
	switch ch {
	case notify.ChannelEmail, notify.ChannelInApp:
		var title string
		if title, err = x.part(partTitle); err != nil {
			return notify.Content{}, err
		}
		if c.Text, err = x.part(partBody); err != nil {
			return notify.Content{}, err
		}
		if ch == notify.ChannelEmail {
			c.Subject = title
			c.HTML = "<p>" + strings.ReplaceAll(html.EscapeString(c.Text), "\n", "<br>") + "</p>"
		} else {
			c.Title = title
		}
	case notify.ChannelWeChat:
		c.Data = make(map[string]string, len(x.p.wechat))
		for k, t := range x.p.wechat {
			if c.Data[k], err = x.exec(t); err != nil {
				return notify.Content{}, err
			}
		}
		c.Title = x.name
		if c.Text, err = x.part(partShort); err != nil {
			return notify.Content{}, err
		}
	default: // sms, push, webhook
		if c.Text, err = x.part(partShort); err != nil {
			return notify.Content{}, err
		}
		if ch != notify.ChannelSMS {
			if c.Title, err = x.part(partTitle); err != nil {
				return notify.Content{}, err
			}
		}
	}
	return c, nil
}
