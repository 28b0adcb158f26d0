package sqlstore

import (
	"context"
	"database/sql"
	"errors"
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
	r := &groupReq{kind: batchInbox, arg: inboxArg{recipientID: recipientID, deliveryID: deliveryID, eventType: eventType, title: title, body: body}}
	if err := s.db.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.out.(int64), nil
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
	before, err := parseIDCursor(cursor)
	if err != nil {
		return page, err
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
		m, err := scanInbox(rows)
		if err != nil {
			return page, err
		}
		page.Messages = append(page.Messages, m)
	}
	if len(page.Messages) > limit {
		page.Messages = page.Messages[:limit]
		page.NextCursor = strconv.FormatInt(page.Messages[limit-1].ID, 10)
	}
	return page, rows.Err()
}

// MarkRead marks a message of the recipient read (again: no change). ErrNotFound when
// the recipient has no such message.
func (s *Inbox) MarkRead(ctx context.Context, recipientID string, id int64) (time.Time, error) {
	if _, err := s.db.W.ExecContext(ctx, s.db.q(`UPDATE herald_inbox SET read_at = ? WHERE id = ? AND recipient_id = ? AND read_at IS NULL`),
		now(), id, recipientID); err != nil {
		return time.Time{}, fmt.Errorf("marking inbox message read: %w", err)
	}
	var read sql.NullInt64
	err := s.db.W.QueryRowContext(ctx, s.db.q(`SELECT read_at FROM herald_inbox WHERE id = ? AND recipient_id = ?`), id, recipientID).Scan(&read)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, ErrNotFound
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading inbox message: %w", err)
	}
	return fromMicros(read.Int64), nil
}

// After returns the recipient's messages with ids above after, oldest first (at most
// limit), for streaming.
func (s *Inbox) After(ctx context.Context, recipientID string, after int64, limit int) ([]InboxMessage, error) {
	rows, err := s.db.R.QueryContext(ctx, s.db.q(`SELECT id, delivery_id, event_type, title, body, created_at, read_at FROM herald_inbox
		WHERE recipient_id = ? AND id > ? ORDER BY id LIMIT ?`), recipientID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading inbox: %w", err)
	}
	defer rows.Close()
	var out []InboxMessage
	for rows.Next() {
		m, err := scanInbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Newest returns the id of the recipient's newest message, 0 when none.
func (s *Inbox) Newest(ctx context.Context, recipientID string) (int64, error) {
	var id sql.NullInt64
	err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT MAX(id) FROM herald_inbox WHERE recipient_id = ?`), recipientID).Scan(&id)
	return id.Int64, err
}

func scanInbox(sc interface{ Scan(...any) error }) (InboxMessage, error) {
	var m InboxMessage
	var created int64
	var read sql.NullInt64
	if err := sc.Scan(&m.ID, &m.DeliveryID, &m.EventType, &m.Title, &m.Body, &created, &read); err != nil {
		return m, err
	}
	m.CreatedAt = fromMicros(created)
	if read.Valid {
		t := fromMicros(read.Int64)
		m.ReadAt = &t
	}
	return m, nil
}

// parseIDCursor reads a cursor that is the id of the last row of the previous page
// (pages go newest first); "" starts at the newest.
func parseIDCursor(cursor string) (int64, error) {
	if cursor == "" {
		return 1<<62 - 1, nil
	}
	n, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || n <= 0 {
		return 0, ErrBadCursor
	}
	return n, nil
}
