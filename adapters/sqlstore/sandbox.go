package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// SandboxSends records what sandbox providers would have sent.
type SandboxSends struct{ db *DB }

// SandboxSends returns the sandbox record.
func (db *DB) SandboxSends() *SandboxSends { return &SandboxSends{db: db} }

// SandboxSend is one message a sandbox provider accepted.
type SandboxSend struct {
	DeliveryID string
	// MessageID is the id the sandbox gave the message, as a provider does: the
	// delivery's provider_message_id. Each send has its own.
	MessageID  string
	Channel    string
	Address    string
	Subject    string
	Body       string
	AcceptedAt time.Time
}

// Add records a send, in a group transaction (DB.Group). Nothing is read back, so the
// sends of a group are one multi-row INSERT on PostgreSQL and MySQL.
func (s *SandboxSends) Add(ctx context.Context, r SandboxSend) error {
	if err := s.db.submit(ctx, &groupReq{kind: batchSandbox, arg: r}); err != nil {
		return fmt.Errorf("recording sandbox send: %w", err)
	}
	return nil
}

// Duplicates counts deliveries of events whose id starts with prefix that a sandbox
// provider or the inbox accepted more than once (each extra acceptance counts one).
func (s *SandboxSends) Duplicates(ctx context.Context, prefix string) (int, error) {
	var n int
	err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT COALESCE(SUM(c - 1), 0) FROM (
		SELECT COUNT(*) AS c FROM herald_sandbox_sends s JOIN herald_deliveries d ON d.id = s.delivery_id
		WHERE d.event_id LIKE ? ESCAPE '!' GROUP BY s.delivery_id HAVING COUNT(*) > 1) AS dup`),
		likePrefix(prefix)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting duplicate sends: %w", err)
	}
	return n, nil
}

// Count returns how many sends were recorded for a delivery.
func (s *SandboxSends) Count(ctx context.Context, deliveryID string) (int, error) {
	var n int
	err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT COUNT(*) FROM herald_sandbox_sends WHERE delivery_id = ?`), deliveryID).Scan(&n)
	return n, err
}
