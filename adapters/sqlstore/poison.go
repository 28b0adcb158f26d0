package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/heraldhq/herald/notify"
)

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
	raw         []byte            // the payload exactly as poisoned
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
	before, err := parseIDCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	return s.list(ctx, `id < ? AND (? = '' OR topic = ?)`, []any{before, topic, topic}, limit)
}

func (s *Poison) list(ctx context.Context, where string, args []any, limit int) ([]PoisonEntry, string, error) {
	rows, err := s.db.R.QueryContext(ctx, s.db.q(`SELECT id, message_uuid, topic, handler, reason, payload, metadata, created_at
		FROM herald_poison WHERE `+where+` ORDER BY id DESC LIMIT `+strconv.Itoa(limit+1)), args...)
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
		e.raw = payload
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

// Get returns one poisoned message, or ErrNotFound.
func (s *Poison) Get(ctx context.Context, id int64) (PoisonEntry, error) {
	es, _, err := s.list(ctx, `id = ?`, []any{id}, 1)
	if err != nil {
		return PoisonEntry{}, err
	}
	if len(es) == 0 {
		return PoisonEntry{}, ErrNotFound
	}
	return es[0], nil
}

// Delete removes a poisoned message for good; ErrNotFound when it is not there.
func (s *Poison) Delete(ctx context.Context, id int64) error {
	res, err := s.db.W.ExecContext(ctx, s.db.q(`DELETE FROM herald_poison WHERE id = ?`), id)
	if err != nil {
		return fmt.Errorf("deleting poisoned message %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Replay puts a poisoned message back on the topic it came from and removes it from
// the poison queue, in one transaction; a poisoned delivery goes back to queued. The
// message is handled again from the start (it is poisoned again if it still fails).
func (s *Poison) Replay(ctx context.Context, id int64) (PoisonEntry, error) {
	e, err := s.Get(ctx, id)
	if err != nil {
		return e, err
	}
	if e.Topic == "" {
		return e, fmt.Errorf("poisoned message %d has no topic to replay to", id)
	}
	md := message.Metadata{}
	for k, v := range e.Metadata {
		switch k {
		case middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey,
			middleware.PoisonedSubscriberKey:
		default:
			md[k] = v
		}
	}
	md["herald_replayed_from"] = strconv.FormatInt(id, 10)
	msg := message.NewMessage(e.MessageUUID, e.raw)
	msg.Metadata = md
	msg.SetContext(ctx)
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.db.q(`DELETE FROM herald_poison WHERE id = ?`), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound // replayed concurrently
		}
		if did := md["delivery_id"]; did != "" {
			if _, err := tx.ExecContext(ctx, s.db.q(`UPDATE herald_deliveries SET status = ?, problem = '', updated_at = ? WHERE id = ? AND status = ?`),
				string(notify.StatusQueued), now(), did, string(notify.StatusPoisoned)); err != nil {
				return err
			}
		}
		pub, err := s.db.NewTxPublisher(wsql.TxFromStdSQL(tx), nil)
		if err != nil {
			return err
		}
		return pub.Publish(e.Topic, msg)
	})
	if err != nil {
		return e, fmt.Errorf("replaying poisoned message %d: %w", id, err)
	}
	s.db.Wake(e.Topic)
	return e, nil
}
