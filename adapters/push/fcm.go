package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/heraldhq/herald/adapters/httpclass"
	"github.com/heraldhq/herald/notify"
)

// FCMConfig configures Firebase Cloud Messaging (HTTP v1).
type FCMConfig struct {
	Name string
	// CredentialsJSON is the service account key file's content; its token_uri is
	// where OAuth2 access tokens come from.
	CredentialsJSON []byte
	// ProjectID; default the service account's project.
	ProjectID string
	// URL of the FCM API. Default https://fcm.googleapis.com.
	URL     string
	Client  *http.Client
	Timeout time.Duration
}

// FCM sends through the FCM HTTP v1 API.
type FCM struct {
	name, endpoint string
	client         *http.Client
	timeout        time.Duration
}

// NewFCM returns the FCM sender.
func NewFCM(ctx context.Context, cfg FCMConfig) (*FCM, error) {
	base := cfg.Client
	if base == nil {
		base = &http.Client{}
	}
	// The OAuth2 token requests use the same HTTP client (private CAs, proxies).
	ctx = context.WithValue(ctx, oauth2.HTTPClient, base)
	creds, err := google.CredentialsFromJSONWithTypeAndParams(ctx, cfg.CredentialsJSON, google.ServiceAccount,
		google.CredentialsParams{Scopes: []string{"https://www.googleapis.com/auth/firebase.messaging"}})
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials: %w", err)
	}
	project := cfg.ProjectID
	if project == "" {
		project = creds.ProjectID
	}
	if project == "" {
		return nil, errors.New("fcm: a project id is required")
	}
	u := cfg.URL
	if u == "" {
		u = "https://fcm.googleapis.com"
	}
	if cfg.Name == "" {
		cfg.Name = "fcm"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	client := &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: base.Transport}}
	return &FCM{name: cfg.Name, endpoint: strings.TrimSuffix(u, "/") + "/v1/projects/" + project + "/messages:send",
		client: client, timeout: cfg.Timeout}, nil
}

func (f *FCM) send(ctx context.Context, tok string, m notify.Message) (notify.Receipt, error) {
	title := m.Content.Title
	if title == "" {
		title = m.Content.Subject
	}
	data := map[string]string{"delivery_id": m.DeliveryID, "event_type": m.EventType}
	for k, v := range m.Content.Data {
		data[k] = v
	}
	msg := map[string]any{"token": tok, "notification": map[string]string{"title": title, "body": m.Content.Text},
		"data": data, "android": map[string]any{"priority": "high"}}
	if m.ExpiresAt != nil {
		msg["android"].(map[string]any)["ttl"] = fmt.Sprintf("%ds", max(int(time.Until(*m.ExpiresAt).Seconds()), 0))
	}
	body, _ := json.Marshal(map[string]any{"message": msg})
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.endpoint, bytes.NewReader(body))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("fcm: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		var out struct {
			Name string `json:"name"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return notify.Receipt{Provider: f.name, ProviderMessageID: out.Name}, nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var fe struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &fe)
	code := fe.Error.Status
	for _, d := range fe.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	if code == "UNREGISTERED" || (code == "INVALID_ARGUMENT" && strings.Contains(fe.Error.Message, "token")) {
		return notify.Receipt{}, notify.Permanent(errors.Join(errDeadToken, fmt.Errorf("fcm answered %s: %s", code, fe.Error.Message)))
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return notify.Receipt{}, httpclass.Check("fcm ("+code+")", resp)
}
