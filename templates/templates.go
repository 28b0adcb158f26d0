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
	title, short, body *template.Template
	wechat             map[string]*template.Template
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
			p.title, p.short, p.body = parse("title", s.Title), parse("short", s.Short), parse("body", s.Body)
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
		v.DirectionText = map[string]string{"credit": "入账", "debit": "支出"}[e.Direction]
		if v.DirectionText == "" {
			v.DirectionText = "变动"
		}
	} else {
		v.Time = t.Format("02 Jan 2006 15:04 MST")
		v.DirectionText = map[string]string{"credit": "credited", "debit": "debited"}[e.Direction]
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
// recipient's time zone. Raw content on an ad-hoc notification is used as is.
func (r *Renderer) Render(e *notify.Event, ch notify.Channel, locale, timeZone string) (notify.Content, error) {
	if e.Template == "" && e.Content != nil && !e.Content.Empty() {
		return *e.Content, nil
	}
	name := e.TemplateName()
	p, ok := r.byKey[locale+"/"+name]
	if !ok {
		return notify.Content{}, notify.Poison(fmt.Errorf("no template %q for locale %s", name, locale))
	}
	v := r.view(e, locale, r.location(timeZone))
	exec := func(t *template.Template) (string, error) {
		var b strings.Builder
		if err := t.Execute(&b, v); err != nil {
			return "", notify.Poison(fmt.Errorf("rendering %s: %w", t.Name(), err))
		}
		return b.String(), nil
	}
	title, err := exec(p.title)
	if err != nil {
		return notify.Content{}, err
	}
	var c notify.Content
	switch ch {
	case notify.ChannelEmail, notify.ChannelInApp:
		body, err := exec(p.body)
		if err != nil {
			return notify.Content{}, err
		}
		c.Text = body
		if ch == notify.ChannelEmail {
			c.Subject = title
			c.HTML = "<p>" + strings.ReplaceAll(html.EscapeString(body), "\n", "<br>") + "</p>"
		} else {
			c.Title = title
		}
	case notify.ChannelWeChat:
		c.Data = make(map[string]string, len(p.wechat))
		for k, t := range p.wechat {
			if c.Data[k], err = exec(t); err != nil {
				return notify.Content{}, err
			}
		}
		c.Title = name
		if c.Text, err = exec(p.short); err != nil {
			return notify.Content{}, err
		}
	default: // sms, push, webhook
		if c.Text, err = exec(p.short); err != nil {
			return notify.Content{}, err
		}
		if ch != notify.ChannelSMS {
			c.Title = title
		}
	}
	return c, nil
}
