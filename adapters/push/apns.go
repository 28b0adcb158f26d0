package push

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/heraldhq/herald/notify"
)

// APNsConfig configures Apple push with token authentication.
type APNsConfig struct {
	Name string
	// KeyPEM is the .p8 signing key; KeyID and TeamID identify it.
	KeyPEM        []byte
	KeyID, TeamID string
	// Topic is the app's bundle id.
	Topic string
	// URL of the APNs API. Default https://api.push.apple.com (production).
	URL       string
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// APNs sends through Apple's HTTP/2 API.
type APNs struct {
	name   string
	topic  string
	client *apns2.Client
}

// apnsNamespace derives apns-id UUIDs from delivery ids.
var apnsNamespace = uuid.MustParse("6f2d8a52-4c1e-4b7a-9a53-2b8f0c1d9e01")

// NewAPNs returns the APNs sender.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	if cfg.KeyID == "" || cfg.TeamID == "" || cfg.Topic == "" {
		return nil, errors.New("apns: key id, team id and topic are required")
	}
	key, err := token.AuthKeyFromBytes(cfg.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("apns: signing key: %w", err)
	}
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID})
	c.Host = apns2.HostProduction
	if cfg.URL != "" {
		c.Host = cfg.URL
	}
	// The standard transport speaks HTTP/2 to APNs and keeps the connection open.
	tc := cfg.TLSConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c.HTTPClient.Transport = &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, IdleConnTimeout: 10 * time.Minute}
	if cfg.Timeout > 0 {
		c.HTTPClient.Timeout = cfg.Timeout
	}
	if cfg.Name == "" {
		cfg.Name = "apns"
	}
	return &APNs{name: cfg.Name, topic: cfg.Topic, client: c}, nil
}

func (a *APNs) send(ctx context.Context, tok string, m notify.Message) (notify.Receipt, error) {
	title := m.Content.Title
	if title == "" {
		title = m.Content.Subject
	}
	payload, _ := json.Marshal(map[string]any{
		"aps":         map[string]any{"alert": map[string]string{"title": title, "body": m.Content.Text}, "sound": "default"},
		"delivery_id": m.DeliveryID, "event_type": m.EventType,
	})
	n := &apns2.Notification{
		DeviceToken: tok, Topic: a.topic, Payload: payload, Priority: apns2.PriorityHigh, PushType: apns2.PushTypeAlert,
		ApnsID: uuid.NewSHA1(apnsNamespace, []byte(m.DeliveryID)).String(), // the same delivery, the same apns-id
	}
	if m.ExpiresAt != nil {
		n.Expiration = *m.ExpiresAt
	}
	res, err := a.client.PushWithContext(ctx, n)
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("apns: %w", err)
	}
	if res.Sent() {
		return notify.Receipt{Provider: a.name, ProviderMessageID: res.ApnsID}, nil
	}
	err = fmt.Errorf("apns answered %d %s", res.StatusCode, res.Reason)
	switch {
	case res.Reason == apns2.ReasonUnregistered || res.Reason == apns2.ReasonBadDeviceToken || res.Reason == apns2.ReasonDeviceTokenNotForTopic:
		return notify.Receipt{}, notify.Permanent(errors.Join(errDeadToken, err))
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 || res.Reason == apns2.ReasonExpiredProviderToken:
		return notify.Receipt{}, err
	default:
		return notify.Receipt{}, notify.Permanent(err)
	}
}
