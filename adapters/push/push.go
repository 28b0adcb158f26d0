// Package push sends mobile push notifications: APNs over HTTP/2 with token (JWT)
// authentication (github.com/sideshow/apns2) and FCM HTTP v1 with service-account
// OAuth2 (golang.org/x/oauth2/google). A recipient's push token names its service with a
// prefix, "apns:<device token>" or "fcm:<registration token>"; an unprefixed token goes
// to FCM when it is configured, else to APNs. Tokens the service reports unregistered or
// invalid are removed from the recipient's contacts and the delivery fails.
package push

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldhq/herald/notify"
)

// TokenRemover forgets a dead push token of a recipient.
type TokenRemover interface {
	RemovePushToken(ctx context.Context, recipientID, token string) error
}

// sender is one push service.
type sender interface {
	send(ctx context.Context, token string, m notify.Message) (notify.Receipt, error)
}

// errDeadToken marks a token the service will never accept again.
var errDeadToken = errors.New("push token unregistered or invalid")

// Provider routes push messages to APNs or FCM.
type Provider struct {
	apns, fcm sender
	tokens    TokenRemover
}

// New returns a provider over the configured services (at least one).
func New(apns *APNs, fcm *FCM, tokens TokenRemover) (*Provider, error) {
	p := &Provider{tokens: tokens}
	if apns != nil {
		p.apns = apns
	}
	if fcm != nil {
		p.fcm = fcm
	}
	if p.apns == nil && p.fcm == nil {
		return nil, errors.New("push: configure APNs, FCM or both")
	}
	return p, nil
}

// Send implements handlers.Provider.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	addr := string(m.Address)
	var s sender
	token := addr
	switch {
	case strings.HasPrefix(addr, "apns:"):
		s, token = p.apns, strings.TrimPrefix(addr, "apns:")
	case strings.HasPrefix(addr, "fcm:"):
		s, token = p.fcm, strings.TrimPrefix(addr, "fcm:")
	case p.fcm != nil:
		s = p.fcm
	default:
		s = p.apns
	}
	if s == nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("push: token for a service that is not configured (%.5s…)", addr))
	}
	r, err := s.send(ctx, token, m)
	if errors.Is(err, errDeadToken) && p.tokens != nil && m.RecipientID != "" {
		if rerr := p.tokens.RemovePushToken(ctx, m.RecipientID, addr); rerr != nil {
			return notify.Receipt{}, errors.Join(err, rerr) // transient: try again, then remove
		}
	}
	return r, err
}
