// Package wechat sends WeChat official-account template messages.
//
// The access_token is cached and refreshed once for all senders (single flight) before
// it expires and when WeChat answers 40001/42001 (the send is then retried once).
// errcodes are classified: -1 (busy) transient; 45009 (daily API quota spent)
// transient until the quota resets at midnight, Beijing time; 43004 (not following the
// account), 40003 (invalid openid), 40037 (invalid template) and other codes
// permanent. The delivery id is sent as client_msg_id, WeChat's duplicate guard.
package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/heraldhq/herald/adapters/httpclass"
	"github.com/heraldhq/herald/notify"
)

// Config of a WeChat official account.
type Config struct {
	Name      string
	AppID     string
	AppSecret string
	// BaseURL of the API. Default https://api.weixin.qq.com.
	BaseURL string
	// Templates maps event types to template ids; the template's data fields are the
	// rendered content's data (templates/builtin.go).
	Templates map[string]string
	// URL opened when the customer taps the message; optional.
	URL     string
	Timeout time.Duration
	Client  *http.Client
}

// Provider sends template messages.
type Provider struct {
	cfg    Config
	client *http.Client
	flight singleflight.Group

	mu      sync.Mutex
	token   string
	expires time.Time
}

// New checks cfg and returns the provider.
func New(cfg Config) (*Provider, error) {
	if cfg.AppID == "" || cfg.AppSecret == "" {
		return nil, errors.New("wechat: app_id and app_secret are required")
	}
	if len(cfg.Templates) == 0 {
		return nil, errors.New("wechat: templates (event type -> template id) are required")
	}
	if cfg.Name == "" {
		cfg.Name = "wechat"
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.weixin.qq.com"
	}
	var c *http.Client
	cfg.Timeout, c = httpclass.Defaults(cfg.Timeout, cfg.Client)
	return &Provider{cfg: cfg, client: c}, nil
}

type apiError struct {
	Code int    `json:"errcode"`
	Msg  string `json:"errmsg"`
}

func (e apiError) Error() string { return fmt.Sprintf("wechat errcode %d: %s", e.Code, e.Msg) }

// Token returns a valid access_token, fetching one when none is cached, it expires
// within five minutes, or stale (the token WeChat just refused) is the cached one.
// Concurrent callers share one fetch.
func (p *Provider) Token(ctx context.Context, stale string) (string, error) {
	p.mu.Lock()
	if p.token != "" && p.token != stale && time.Until(p.expires) > 5*time.Minute {
		t := p.token
		p.mu.Unlock()
		return t, nil
	}
	p.mu.Unlock()
	v, err, _ := p.flight.Do("token", func() (any, error) {
		p.mu.Lock()
		if p.token != "" && p.token != stale && time.Until(p.expires) > 5*time.Minute {
			t := p.token
			p.mu.Unlock()
			return t, nil // refreshed by the flight that just ended
		}
		p.mu.Unlock()
		return p.fetchToken(ctx)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (p *Provider) fetchToken(ctx context.Context) (string, error) {
	q := url.Values{"grant_type": {"client_credential"}, "appid": {p.cfg.AppID}, "secret": {p.cfg.AppSecret}}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.BaseURL+"/cgi-bin/token?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("wechat token: %w", err)
	}
	defer resp.Body.Close()
	if err := httpclass.Check("wechat token", resp); err != nil {
		return "", err
	}
	var out struct {
		apiError
		Token     string `json:"access_token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("wechat token: %w", err)
	}
	if out.Token == "" {
		// -1 is busy; anything else (bad appid/secret, IP not whitelisted) is configuration.
		if out.Code == -1 {
			return "", fmt.Errorf("wechat token: %w", out.apiError)
		}
		return "", notify.Permanent(fmt.Errorf("wechat token: %w", out.apiError))
	}
	p.mu.Lock()
	p.token, p.expires = out.Token, time.Now().Add(time.Duration(out.ExpiresIn)*time.Second)
	p.mu.Unlock()
	return out.Token, nil
}

type field struct {
	Value string `json:"value"`
}

// Send implements handlers.Provider.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	tmpl, ok := p.cfg.Templates[m.EventType]
	if !ok {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("wechat: no template configured for %s", m.EventType))
	}
	data := make(map[string]field, len(m.Content.Data))
	for k, v := range m.Content.Data {
		data[k] = field{Value: v}
	}
	body, err := json.Marshal(map[string]any{"touser": string(m.Address), "template_id": tmpl, "url": p.cfg.URL,
		"data": data, "client_msg_id": m.DeliveryID})
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	stale := ""
	for attempt := 0; ; attempt++ {
		token, err := p.Token(ctx, stale)
		if err != nil {
			return notify.Receipt{}, err
		}
		id, err := p.post(ctx, token, body)
		var ae apiError
		if errors.As(err, &ae) && (ae.Code == 40001 || ae.Code == 42001) && attempt == 0 {
			stale = token // refresh once, then try again
			continue
		}
		if err != nil {
			return notify.Receipt{}, classify(err)
		}
		return notify.Receipt{Provider: p.cfg.Name, ProviderMessageID: id}, nil
	}
}

func (p *Provider) post(ctx context.Context, token string, body []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		p.cfg.BaseURL+"/cgi-bin/message/template/send?access_token="+url.QueryEscape(token), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("wechat: %w", err) // the token is in the URL: never log the request
	}
	defer resp.Body.Close()
	if err := httpclass.Check("wechat", resp); err != nil {
		return "", err
	}
	var out struct {
		apiError
		MsgID json.Number `json:"msgid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("wechat: decoding answer: %w", err)
	}
	if out.Code != 0 {
		return "", out.apiError
	}
	return out.MsgID.String(), nil
}

var beijing = time.FixedZone("CST", 8*3600)

func classify(err error) error {
	var ae apiError
	if !errors.As(err, &ae) {
		return err // transport errors are already classified
	}
	switch ae.Code {
	case -1, 40001, 42001: // busy; a token refused twice in a row
		return err
	case 45009: // daily quota spent: it resets at midnight, Beijing time
		now := time.Now().In(beijing)
		midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 5, 0, beijing)
		return notify.RetryAfter(err, time.Until(midnight))
	default:
		return notify.Permanent(err)
	}
}
