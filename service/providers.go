package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/heraldhq/herald/adapters/email"
	"github.com/heraldhq/herald/adapters/push"
	"github.com/heraldhq/herald/adapters/sms/httpgw"
	"github.com/heraldhq/herald/adapters/sms/smpp"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/adapters/wechat"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/server"
)

// ProviderConfig is one entry of the providers file (docs/providers.md).
type ProviderConfig struct {
	Name    string         `yaml:"name"`
	Kind    string         `yaml:"kind"`    // smtp, sms-http, webhook
	Channel notify.Channel `yaml:"channel"` // default by kind
	Timeout time.Duration  `yaml:"timeout"`
	// CAFile is a PEM bundle of private CAs to trust (besides the system's).
	CAFile string `yaml:"ca_file"`

	// smtp
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	From     string `yaml:"from"`

	// sms-http
	URL            string            `yaml:"url"`
	Format         string            `yaml:"format"`
	Fields         map[string]string `yaml:"fields"` // to, text, reference, sender -> the gateway's names
	Sender         string            `yaml:"sender"`
	Extra          map[string]string `yaml:"extra"`
	MessageIDField string            `yaml:"message_id_field"`

	// sms-http, webhook
	Secret string `yaml:"secret"`

	// wechat
	AppID     string            `yaml:"app_id"`
	AppSecret string            `yaml:"app_secret"`
	BaseURL   string            `yaml:"base_url"`
	Templates map[string]string `yaml:"templates"` // event type -> template id
	OpenURL   string            `yaml:"open_url"`

	// push: APNs (token auth) and/or FCM (HTTP v1)
	APNsKeyFile        string `yaml:"apns_key_file"`
	APNsKeyID          string `yaml:"apns_key_id"`
	APNsTeamID         string `yaml:"apns_team_id"`
	APNsTopic          string `yaml:"apns_topic"`
	APNsURL            string `yaml:"apns_url"`
	FCMCredentialsFile string `yaml:"fcm_credentials_file"`
	FCMProject         string `yaml:"fcm_project"`
	FCMURL             string `yaml:"fcm_url"`

	// smpp (host and tls above: tls "implicit" wraps the connection)
	Addr       string `yaml:"addr"`
	SystemID   string `yaml:"system_id"`
	SystemType string `yaml:"system_type"`
	SourceTON  byte   `yaml:"source_ton"`
	SourceNPI  byte   `yaml:"source_npi"`
	Window     int    `yaml:"window"`
}

// Deps are what providers need from the rest of Herald.
type Deps struct {
	Tokens  push.TokenRemover
	Reports smpp.ReportSink
}

// countedReports records the delivery reports an SMPP connection receives and counts
// them as the receipts endpoint does (server.ReportsCounter).
type countedReports struct {
	sink    smpp.ReportSink
	metrics *metrics.Set
}

func (c countedReports) RecordReport(ctx context.Context, provider string, r notify.Report) (bool, error) {
	found, err := c.sink.RecordReport(ctx, provider, r)
	if err != nil {
		return found, err
	}
	server.ReportsCounter(c.metrics, found).Inc()
	return found, nil
}

// ProvidersFile is the file --providers names.
type ProvidersFile struct {
	Providers []ProviderConfig `yaml:"providers"`
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// LoadProviders reads a providers file. ${VAR} is replaced by the environment
// variable VAR (secrets stay out of the file); a missing variable is an error.
func LoadProviders(path string) (ProvidersFile, error) {
	var f ProvidersFile
	raw, err := os.ReadFile(path) //nolint:gosec // the operator's own file
	if err != nil {
		return f, fmt.Errorf("providers file: %w", err)
	}
	var missing []string
	expanded := envRef.ReplaceAllStringFunc(string(raw), func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return f, fmt.Errorf("providers file %s: environment variables not set: %v", path, missing)
	}
	dec := yaml.NewDecoder(strings.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("providers file %s: %w", path, err)
	}
	return f, nil
}

// Built are the providers of a file: the provider of each channel (the first listed
// for it) and the delivery-report takers by name.
type Built struct {
	ByChannel map[notify.Channel]handlers.Provider
	Names     map[notify.Channel]string
	Reporters map[string]server.Reporter
	// Closers release connections (SMTP, SMPP) at shutdown.
	Closers []io.Closer
}

// Build constructs the providers.
func (f ProvidersFile) Build(ctx context.Context, deps Deps) (Built, error) {
	b := Built{ByChannel: map[notify.Channel]handlers.Provider{}, Names: map[notify.Channel]string{}, Reporters: map[string]server.Reporter{}}
	seen := map[string]bool{}
	var errs []error
	for i, pc := range f.Providers {
		where := fmt.Sprintf("providers[%d] (%s)", i, pc.Name)
		if pc.Name == "" || seen[pc.Name] {
			errs = append(errs, fmt.Errorf("%s: a unique name is required", where))
			continue
		}
		seen[pc.Name] = true
		tc, client, err := pc.tls()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		var p handlers.Provider
		ch := pc.Channel
		switch pc.Kind {
		case "smtp":
			ch = defaultChannel(ch, notify.ChannelEmail)
			var ep *email.Provider
			ep, err = email.New(email.Config{Name: pc.Name, Host: pc.Host, Port: pc.Port, TLS: pc.TLS, Username: pc.Username,
				Password: pc.Password, From: pc.From, Timeout: pc.Timeout, TLSConfig: tc})
			if err == nil {
				p = ep
				b.Closers = append(b.Closers, ep)
			}
		case "sms-http":
			ch = defaultChannel(ch, notify.ChannelSMS)
			var gw *httpgw.Provider
			gw, err = httpgw.New(httpgw.Config{Name: pc.Name, URL: pc.URL, Format: pc.Format, ToField: pc.Fields["to"],
				TextField: pc.Fields["text"], ReferenceField: pc.Fields["reference"], SenderField: pc.Fields["sender"],
				Sender: pc.Sender, Extra: pc.Extra, Secret: pc.Secret, MessageIDField: pc.MessageIDField, Timeout: pc.Timeout, Client: client})
			if err == nil {
				p = gw
				b.Reporters[pc.Name] = gw
			}
		case "wechat":
			ch = defaultChannel(ch, notify.ChannelWeChat)
			p, err = wechat.New(wechat.Config{Name: pc.Name, AppID: pc.AppID, AppSecret: pc.AppSecret, BaseURL: pc.BaseURL,
				Templates: pc.Templates, URL: pc.OpenURL, Timeout: pc.Timeout, Client: client})
		case "push":
			ch = defaultChannel(ch, notify.ChannelPush)
			p, err = pc.push(ctx, tc, client, deps.Tokens)
		case "smpp":
			ch = defaultChannel(ch, notify.ChannelSMS)
			var stls *tls.Config
			if pc.TLS == "implicit" {
				stls = tc
				if stls == nil {
					stls = &tls.Config{MinVersion: tls.VersionTLS12}
				}
			}
			var sc *smpp.Client
			sc, err = smpp.New(smpp.Config{Name: pc.Name, Addr: pc.Addr, TLS: stls, SystemID: pc.SystemID, Password: pc.Password,
				SystemType: pc.SystemType, Source: pc.Sender, SourceTON: pc.SourceTON, SrcNPI: pc.SourceNPI, Window: pc.Window,
				Timeout: pc.Timeout, Reports: deps.Reports})
			if err == nil {
				p = sc
				b.Closers = append(b.Closers, sc)
			}
		case "webhook":
			ch = defaultChannel(ch, notify.ChannelWebhook)
			p, err = webhook.New(webhook.Config{Name: pc.Name, Secret: pc.Secret, Timeout: pc.Timeout, Client: client})
		default:
			err = fmt.Errorf("unknown kind %q (smtp, sms-http, smpp, wechat, push, webhook)", pc.Kind)
		}
		if err == nil && !ch.Valid() {
			err = fmt.Errorf("unknown channel %q", ch)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if _, taken := b.ByChannel[ch]; !taken {
			b.ByChannel[ch], b.Names[ch] = p, pc.Name
		}
	}
	return b, errors.Join(errs...)
}

func defaultChannel(ch, def notify.Channel) notify.Channel {
	if ch == "" {
		return def
	}
	return ch
}

func (pc ProviderConfig) push(ctx context.Context, tc *tls.Config, client *http.Client, tokens push.TokenRemover) (handlers.Provider, error) {
	var a *push.APNs
	var f *push.FCM
	if pc.APNsKeyFile != "" {
		key, err := os.ReadFile(pc.APNsKeyFile)
		if err != nil {
			return nil, err
		}
		if tc != nil {
			tc = tc.Clone()
			tc.ServerName = ""
		}
		if a, err = push.NewAPNs(push.APNsConfig{Name: pc.Name + "-apns", KeyPEM: key, KeyID: pc.APNsKeyID, TeamID: pc.APNsTeamID,
			Topic: pc.APNsTopic, URL: pc.APNsURL, TLSConfig: tc, Timeout: pc.Timeout}); err != nil {
			return nil, err
		}
	}
	if pc.FCMCredentialsFile != "" {
		creds, err := os.ReadFile(pc.FCMCredentialsFile)
		if err != nil {
			return nil, err
		}
		if f, err = push.NewFCM(ctx, push.FCMConfig{Name: pc.Name + "-fcm", CredentialsJSON: creds, ProjectID: pc.FCMProject,
			URL: pc.FCMURL, Client: client, Timeout: pc.Timeout}); err != nil {
			return nil, err
		}
	}
	return push.New(a, f, tokens)
}

func (pc ProviderConfig) tls() (*tls.Config, *http.Client, error) {
	if pc.CAFile == "" {
		return nil, nil, nil
	}
	pem, err := os.ReadFile(pc.CAFile)
	if err != nil {
		return nil, nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("ca_file %s holds no PEM certificate", pc.CAFile)
	}
	tc := &tls.Config{RootCAs: pool, ServerName: pc.Host, MinVersion: tls.VersionTLS12}
	hc := tc.Clone()
	hc.ServerName = "" // taken from each request's URL
	return tc, &http.Client{Transport: &http.Transport{TLSClientConfig: hc}}, nil
}
