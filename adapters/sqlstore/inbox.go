package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Inbox is the in-app inbox: one row per in-app delivery.
type Inbox struct{ db *DB }

// Inbox returns the in-app inbox store.
func (db *DB) Inbox() *Inbox { return &Inbox{db: db} }

// InboxMessage is one message in a recipient's inbox.
type InboxMessage struct {
	ID         int64      `json:"id"`
	DeliveryID string     `json:"delivery_id"`
	EventType  string     `json:"event_type"`
	Title      string     `json:"title"`
	Body       string     `json:"body"`
	CreatedAt  time.Time  `json:"created_at"`
	ReadAt     *time.Time `json:"read_at,omitempty"`
}

// Add puts a message in the inbox; adding the same delivery twice keeps one message.
// It returns the message id.
func (s *Inbox) Add(ctx context.Context, recipientID, deliveryID, eventType, title, body string) (int64, error) {
	_, err := s.db.W.ExecContext(ctx, s.db.q(`INSERT INTO herald_inbox (recipient_id, delivery_id, event_type, title, body, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`+s.db.onConflictNothing("delivery_id")), recipientID, deliveryID, eventType, title, body, now())
	if err != nil {
		return 0, fmt.Errorf("adding to inbox: %w", err)
	}
	var id int64
	if err := s.db.W.QueryRowContext(ctx, s.db.q(`SELECT id FROM herald_inbox WHERE delivery_id = ?`), deliveryID).Scan(&id); err != nil {
		return 0, fmt.Errorf("reading inbox message id: %w", err)
	}
	return id, nil
}

// InboxPage is one page of an inbox, newest first.
type InboxPage struct {
	Messages   []InboxMessage `json:"messages"`
	Unread     int            `json:"unread"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// List returns up to limit messages older than cursor (a message id), newest first.
func (s *Inbox) List(ctx context.Context, recipientID, cursor string, limit int) (InboxPage, error) {
	page := InboxPage{Messages: []InboxMessage{}}
	if limit <= 0 {
		limit = 50
	}
	before := int64(1<<62 - 1)
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n <= 0 {
			return page, ErrBadCursor
		}
		before = n
	}
	if err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT COUNT(*) FROM herald_inbox WHERE recipient_id = ? AND read_at IS NULL`),
		recipientID).Scan(&page.Unread); err != nil {
		return page, fmt.Errorf("counting unread: %w", err)
	}
	rows, err := s.db.R.QueryContext(ctx, s.db.q(`SELECT id, delivery_id, event_type, title, body, created_at, read_at FROM herald_inbox
		WHERE recipient_id = ? AND id < ? ORDER BY id DESC LIMIT ?`), recipientID, before, limit+1)
	if err != nil {
		return page, fmt.Errorf("listing inbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m InboxMessage
		var created int64
		var read sql.NullInt64
		if err := rows.Scan(&m.ID, &m.DeliveryID, &m.EventType, &m.Title, &m.Body, &created, &read); err != nil {
			return page, err
		}
		m.CreatedAt = fromMicros(created)
		if read.Valid {
			t := fromMicros(read.Int64)
			m.ReadAt = &t
		}
		page.Messages = append(page.Messages, m)
	}
	if len(page.Messages) > limit {
		page.Messages = page.Messages[:limit]
		page.NextCursor = strconv.FormatInt(page.Messages[limit-1].ID, 10)
	}
	return page, rows.Err()
}

// Poison is the poison queue: messages that could not be processed, with the reason.
type Poison struct{ db *DB }

// Poison returns the poison queue store.
func (db *DB) Poison() *Poison { return &Poison{db: db} }

// PoisonEntry is one poisoned message.
type PoisonEntry struct {
	ID          int64             `json:"id"`
	MessageUUID string            `json:"message_uuid"`
	Topic       string            `json:"topic"`
	Handler     string            `json:"handler"`
	Reason      string            `json:"reason"`
	Payload     json.RawMessage   `json:"payload"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
}

// Add stores a poisoned message.
func (s *Poison) Add(ctx context.Context, e PoisonEntry) error {
	md, err := json.Marshal(e.Metadata)
	if err != nil {
		return err
	}
	_, err = s.db.W.ExecContext(ctx, s.db.q(`INSERT INTO herald_poison (message_uuid, topic, handler, reason, payload, metadata, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), e.MessageUUID, e.Topic, e.Handler, truncate(e.Reason), []byte(e.Payload), string(md), now())
	if err != nil {
		return fmt.Errorf("storing poisoned message: %w", err)
	}
	return nil
}

// List returns poisoned messages newest first, optionally of one topic, older than
// the cursor (an entry id).
func (s *Poison) List(ctx context.Context, topic, cursor string, limit int) ([]PoisonEntry, string, error) {
	if limit <= 0 {
		limit = 50
	}
	before := int64(1<<62 - 1)
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n <= 0 {
			return nil, "", ErrBadCursor
		}
		before = n
	}
	rows, err := s.db.R.QueryContext(ctx, s.db.q(`SELECT id, message_uuid, topic, handler, reason, payload, metadata, created_at
		FROM herald_poison WHERE id < ? AND (? = '' OR topic = ?) ORDER BY id DESC LIMIT ?`), before, topic, topic, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("listing poison queue: %w", err)
	}
	defer rows.Close()
	out := []PoisonEntry{}
	for rows.Next() {
		var e PoisonEntry
		var payload []byte
		var md string
		var created int64
		if err := rows.Scan(&e.ID, &e.MessageUUID, &e.Topic, &e.Handler, &e.Reason, &payload, &md, &created); err != nil {
			return nil, "", err
		}
		if json.Valid(payload) {
			e.Payload = payload
		} else {
			e.Payload, _ = json.Marshal(string(payload))
		}
		_ = json.Unmarshal([]byte(md), &e.Metadata)
		e.CreatedAt = fromMicros(created)
		out = append(out, e)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = strconv.FormatInt(out[limit-1].ID, 10)
	}
	return out, next, rows.Err()
}
