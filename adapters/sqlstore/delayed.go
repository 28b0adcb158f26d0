package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Delayed is the persistent delayed requeue: messages parked in herald_delayed until
// their due time, then moved back to their topic. A long backoff waits here, in a
// table, not in a goroutine holding a subscription.
type Delayed struct{ db *DB }

// Delayed returns the delayed-message store.
func (db *DB) Delayed() *Delayed { return &Delayed{db: db} }

// Add parks msg for topic until due.
func (d *Delayed) Add(ctx context.Context, topic string, msg *message.Message, due time.Time) error {
	md, err := json.Marshal(map[string]string(msg.Metadata))
	if err != nil {
		return fmt.Errorf("encoding metadata: %w", err)
	}
	_, err = d.db.W.ExecContext(ctx, d.db.q(`INSERT INTO herald_delayed (topic, uuid, payload, metadata, due_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`), topic, msg.UUID, []byte(msg.Payload), string(md), due.UnixMicro(), now())
	if err != nil {
		return fmt.Errorf("parking message %s for %s: %w", msg.UUID, topic, err)
	}
	return nil
}

// Count returns how many messages are parked.
func (d *Delayed) Count(ctx context.Context) (int, error) {
	var n int
	err := d.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_delayed`).Scan(&n)
	return n, err
}

// MoveDue moves up to limit messages whose time has come back to their topics and
// returns how many it moved. With a nil publisher they are published to SQL topics in
// the same transaction that deletes them (moved exactly once); otherwise through pub
// before the delete commits (at least once: a crash in between publishes again, which
// the delivery leases absorb). Rows locked by another instance are skipped.
func (d *Delayed) MoveDue(ctx context.Context, limit int, pub message.Publisher) (int, error) {
	moved := 0
	var topics []string
	err := d.db.InTx(ctx, func(tx *sql.Tx) error {
		topics = topics[:0]
		q := `SELECT id, topic, uuid, payload, metadata FROM herald_delayed WHERE due_at <= ? ORDER BY due_at LIMIT ?`
		if d.db.Dialect != SQLite {
			q += ` FOR UPDATE SKIP LOCKED`
		}
		var ids []any
		byTopic := map[string][]*message.Message{}
		if err := d.readDue(ctx, tx, q, limit, func(id int64, topic string, m *message.Message) {
			if _, ok := byTopic[topic]; !ok {
				topics = append(topics, topic)
			}
			byTopic[topic] = append(byTopic[topic], m)
			ids = append(ids, id)
		}); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if pub == nil {
			var err error
			if pub, err = d.db.NewTxPublisher(wsql.TxFromStdSQL(tx), nil); err != nil {
				return err
			}
		}
		for _, t := range topics {
			if err := pub.Publish(t, byTopic[t]...); err != nil {
				return fmt.Errorf("requeueing to %s: %w", t, err)
			}
		}
		marks := strings.Repeat("?,", len(ids))
		if _, err := tx.ExecContext(ctx, d.db.q(`DELETE FROM herald_delayed WHERE id IN (`+marks[:len(marks)-1]+`)`), ids...); err != nil {
			return fmt.Errorf("deleting requeued messages: %w", err)
		}
		moved = len(ids)
		return nil
	})
	if err == nil && moved > 0 {
		d.db.Wake(topics...)
	}
	return moved, err
}

func (d *Delayed) readDue(ctx context.Context, tx *sql.Tx, q string, limit int, each func(int64, string, *message.Message)) error {
	rows, err := tx.QueryContext(ctx, d.db.q(q), now(), limit)
	if err != nil {
		return fmt.Errorf("reading due messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var topic, uuid, md string
		var payload []byte
		if err := rows.Scan(&id, &topic, &uuid, &payload, &md); err != nil {
			return err
		}
		m := message.NewMessage(uuid, payload)
		if err := json.Unmarshal([]byte(md), &m.Metadata); err != nil {
			return fmt.Errorf("decoding metadata of parked message %d: %w", id, err)
		}
		m.SetContext(ctx)
		each(id, topic, m)
	}
	return rows.Err()
}

// RecipientWindows counts sends per address per fixed window, for the per-recipient
// cap. Addresses are stored hashed: the table holds no customer data.
type RecipientWindows struct{ db *DB }

// RecipientWindows returns the per-recipient counter store.
func (db *DB) RecipientWindows() *RecipientWindows { return &RecipientWindows{db: db} }

// AddressKey is the hashed key of an address in counters.
func AddressKey(address string) string {
	sum := sha256.Sum256([]byte(address))
	return hex.EncodeToString(sum[:16])
}

// Incr counts one send to address in the window starting at start and returns the
// count including it.
func (w *RecipientWindows) Incr(ctx context.Context, address string, start time.Time) (int, error) {
	key, ws := AddressKey(address), start.UnixMicro()
	var n int
	if w.db.Dialect == MySQL {
		err := w.db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO herald_recipient_windows (addr_key, window_start, sends) VALUES (?, ?, 1)
				ON DUPLICATE KEY UPDATE sends = sends + 1`, key, ws); err != nil {
				return err
			}
			return tx.QueryRowContext(ctx, `SELECT sends FROM herald_recipient_windows WHERE addr_key = ? AND window_start = ?`, key, ws).Scan(&n)
		})
		if err != nil {
			return 0, fmt.Errorf("counting recipient sends: %w", err)
		}
		return n, nil
	}
	err := w.db.W.QueryRowContext(ctx, w.db.q(`INSERT INTO herald_recipient_windows (addr_key, window_start, sends) VALUES (?, ?, 1)
		ON CONFLICT (addr_key, window_start) DO UPDATE SET sends = herald_recipient_windows.sends + 1 RETURNING sends`), key, ws).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting recipient sends: %w", err)
	}
	return n, nil
}

// Prune deletes windows that started before t.
func (w *RecipientWindows) Prune(ctx context.Context, before time.Time) error {
	_, err := w.db.W.ExecContext(ctx, w.db.q(`DELETE FROM herald_recipient_windows WHERE window_start < ?`), before.UnixMicro())
	return err
}
