package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/notify"
)

// Recipients is the SQL-backed recipient directory.
type Recipients struct{ db *DB }

// Recipients returns the recipient directory.
func (db *DB) Recipients() *Recipients { return &Recipients{db: db} }

// Put creates or replaces a recipient.
func (s *Recipients) Put(ctx context.Context, r notify.Recipient) (notify.Recipient, error) {
	contacts, err := json.Marshal(r.Contacts)
	if err != nil {
		return r, err
	}
	prefs, err := json.Marshal(r.Preferences)
	if err != nil {
		return r, err
	}
	t := now()
	_, err = s.db.W.ExecContext(ctx, s.db.q(`INSERT INTO herald_recipients (id, locale, time_zone, contacts, preferences, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)`+s.db.onConflictUpdate("id", "locale", "time_zone", "contacts", "preferences", "updated_at")),
		r.ID, r.Locale, r.TimeZone, string(contacts), string(prefs), t)
	if err != nil {
		return r, fmt.Errorf("saving recipient: %w", err)
	}
	r.UpdatedAt = fromMicros(t)
	return r, nil
}

// Get returns a recipient, or ErrNotFound. Concurrent calls (the fan-outs of a batch)
// share queries: while one query runs, the ids asked for meanwhile wait and are read
// together by the next one, so a burst of events costs a few queries, not one each.
func (s *Recipients) Get(ctx context.Context, id string) (notify.Recipient, error) {
	l := &s.db.recipients
	c := make(chan recipientResult, 1)
	l.mu.Lock()
	if l.pending == nil {
		l.pending = map[string][]chan recipientResult{}
	}
	l.pending[id] = append(l.pending[id], c)
	if !l.running {
		l.running = true
		go s.load()
	}
	l.mu.Unlock()
	select {
	case res := <-c:
		return res.r, res.err
	case <-ctx.Done():
		return notify.Recipient{}, ctx.Err()
	}
}

// recipientLoader holds the ids waiting for the next recipient query.
type recipientLoader struct {
	mu      sync.Mutex
	pending map[string][]chan recipientResult
	running bool // a load loop runs
}

type recipientResult struct {
	r   notify.Recipient
	err error
}

// loadBatch bounds the ids of one query.
const loadBatch = 500

// load answers waiting Gets until none is left.
func (s *Recipients) load() {
	l := &s.db.recipients
	for {
		l.mu.Lock()
		if len(l.pending) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		waiting := l.pending
		l.pending = nil
		l.mu.Unlock()
		ids := make([]string, 0, len(waiting))
		for id := range waiting {
			ids = append(ids, id)
		}
		for i := 0; i < len(ids); i += loadBatch {
			chunk := ids[i:min(i+loadBatch, len(ids))]
			found, err := s.read(chunk)
			for _, id := range chunk {
				res := recipientResult{err: err}
				if err == nil {
					r, ok := found[id]
					res.r = r
					if !ok {
						res.err = ErrNotFound
					}
				}
				for _, c := range waiting[id] {
					c <- res
				}
			}
		}
	}
}

// read reads the recipients of ids; missing ones are absent from the map.
func (s *Recipients) read(ids []string) (map[string]notify.Recipient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const cols = `SELECT id, locale, time_zone, contacts, preferences, updated_at FROM herald_recipients WHERE id `
	found := make(map[string]notify.Recipient, len(ids))
	var rows *sql.Rows
	var err error
	if len(ids) == 1 {
		var st *sql.Stmt
		if st, err = s.db.stmtOn(ctx, s.db.R, cols+`= ?`); err == nil { //nolint:sqlclosecheck // cached; closed by DB.Close
			rows, err = st.QueryContext(ctx, ids[0])
		}
	} else {
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		rows, err = s.db.R.QueryContext(ctx, s.db.q(cols+`IN (`+placeholders(len(ids))+`)`), args...)
	}
	if err != nil {
		return nil, fmt.Errorf("reading recipients: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var r notify.Recipient
		var contacts, prefs string
		var updated int64
		if err := rows.Scan(&r.ID, &r.Locale, &r.TimeZone, &contacts, &prefs, &updated); err != nil {
			return nil, fmt.Errorf("reading recipients: %w", err)
		}
		if err := json.Unmarshal([]byte(contacts), &r.Contacts); err != nil {
			return nil, fmt.Errorf("decoding contacts of recipient: %w", err)
		}
		if err := json.Unmarshal([]byte(prefs), &r.Preferences); err != nil {
			return nil, fmt.Errorf("decoding preferences of recipient: %w", err)
		}
		r.UpdatedAt = fromMicros(updated)
		found[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading recipients: %w", err)
	}
	return found, nil
}

// RemovePushToken takes a push token the push service refused for good (unregistered,
// invalid) out of the recipient's contacts, so no further message is sent to it. The
// read and the write are one compare-and-set on updated_at: a concurrent update of the
// recipient wins and the removal is tried again.
func (s *Recipients) RemovePushToken(ctx context.Context, recipientID, token string) error {
	for try := 0; try < 3; try++ {
		var contacts string
		var updated int64
		err := s.db.W.QueryRowContext(ctx, s.db.q(`SELECT contacts, updated_at FROM herald_recipients WHERE id = ?`), recipientID).
			Scan(&contacts, &updated)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // an inline contact: nothing stored to clean
		}
		if err != nil {
			return fmt.Errorf("reading recipient: %w", err)
		}
		var c notify.Contacts
		if err := json.Unmarshal([]byte(contacts), &c); err != nil {
			return fmt.Errorf("decoding contacts: %w", err)
		}
		kept := make([]string, 0, len(c.PushTokens))
		for _, t := range c.PushTokens {
			if t != token {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(c.PushTokens) {
			return nil
		}
		c.PushTokens = kept
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		res, err := s.db.W.ExecContext(ctx, s.db.q(`UPDATE herald_recipients SET contacts = ?, updated_at = ? WHERE id = ? AND updated_at = ?`),
			string(b), max(now(), updated+1), recipientID, updated)
		if err != nil {
			return fmt.Errorf("removing push token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
	}
	return errors.New("removing push token: the recipient kept changing")
}

// Notifications records what the fan-out did with each event and ad-hoc notification.
type Notifications struct{ db *DB }

// Notifications returns the notification log.
func (db *DB) Notifications() *Notifications { return &Notifications{db: db} }

// Notification is the fan-out's record of one event.
type Notification struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	CustomerID string    `json:"customer_id,omitempty"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	OccurredAt time.Time `json:"occurred_at"`
	CreatedAt  time.Time `json:"created_at"`
}

// Notification statuses.
const (
	NotificationPending   = "pending"    // in the outbox, not yet fanned out
	NotificationFannedOut = "fanned_out" // deliveries created
	NotificationSkipped   = "skipped"    // nothing to send (preferences, no address)
	NotificationPoisoned  = "poisoned"   // invalid: see the poison queue
)

// NotificationRecord is a fan-out's outcome: the notification and how many
// deliveries it made.
type NotificationRecord struct {
	Notification
	Deliveries int
}

// Record saves fan-out outcomes inside tx in one statement (idempotent: a recorded
// notification is kept).
func (s *Notifications) Record(ctx context.Context, tx Execer, rs []NotificationRecord) error {
	if len(rs) == 0 {
		return nil
	}
	t := now()
	if s.db.Dialect == Postgres { // one statement text for any count (batch.go)
		var c [5][]string
		n, occ := make([]int64, len(rs)), make([]int64, len(rs))
		for i, r := range rs {
			c[0], c[1], c[2], c[3], c[4] = append(c[0], r.ID), append(c[1], r.Type), append(c[2], r.CustomerID), append(c[3], r.Status), append(c[4], r.Reason)
			n[i], occ[i] = int64(r.Deliveries), r.OccurredAt.UnixMicro()
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO herald_notifications (id, type, customer_id, status, reason, deliveries,
		occurred_at, created_at) SELECT *, $8::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
		$6::int[], $7::bigint[])`+s.db.onConflictNothing("id"), c[0], c[1], c[2], c[3], c[4], n, occ, t)
		if err != nil {
			return fmt.Errorf("recording %d notifications: %w", len(rs), err)
		}
		return nil
	}
	if tx, ok := tx.(*sql.Tx); ok && s.db.Dialect == SQLite { // one prepared row at a time (batch.go)
		err := s.db.execEach(ctx, tx, `INSERT INTO herald_notifications (id, type, customer_id, status, reason, deliveries,
		occurred_at, created_at) VALUES (?,?,?,?,?,?,?,?)`+s.db.onConflictNothing("id"), len(rs), func(i int) []any {
			r := rs[i]
			return []any{r.ID, r.Type, r.CustomerID, r.Status, r.Reason, r.Deliveries, r.OccurredAt.UnixMicro(), t}
		})
		if err != nil {
			return fmt.Errorf("recording %d notifications: %w", len(rs), err)
		}
		return nil
	}
	args := make([]any, 0, 8*len(rs))
	for _, r := range rs {
		args = append(args, r.ID, r.Type, r.CustomerID, r.Status, r.Reason, r.Deliveries, r.OccurredAt.UnixMicro(), t)
	}
	_, err := tx.ExecContext(ctx, s.db.q(`INSERT INTO herald_notifications (id, type, customer_id, status, reason, deliveries,
		occurred_at, created_at) VALUES `+valueRows(len(rs), 8)+
		s.db.onConflictNothing("id")), args...)
	if err != nil {
		return fmt.Errorf("recording %d notifications: %w", len(rs), err)
	}
	return nil
}

// Get returns the fan-out record of an event; an event still in the outbox comes back
// as pending; ErrNotFound when Herald never saw it.
func (s *Notifications) Get(ctx context.Context, id string) (Notification, error) {
	var n Notification
	var occ, created int64
	err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT id, type, customer_id, status, reason, occurred_at, created_at
		FROM herald_notifications WHERE id = ?`), id).Scan(&n.ID, &n.Type, &n.CustomerID, &n.Status, &n.Reason, &occ, &created)
	if err == nil {
		n.OccurredAt, n.CreatedAt = fromMicros(occ), fromMicros(created)
		return n, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("reading notification: %w", err)
	}
	var reason string
	err = s.db.R.QueryRowContext(ctx, s.db.q(`SELECT reason FROM herald_poison WHERE message_uuid = ? ORDER BY id DESC LIMIT 1`), id).Scan(&reason)
	if err == nil {
		return Notification{ID: id, Status: NotificationPoisoned, Reason: reason}, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("reading poison queue: %w", err)
	}
	for _, t := range []string{EventsTopic, CriticalEventsTopic} {
		var one int
		err = s.db.R.QueryRowContext(ctx, s.db.q(`SELECT 1 FROM "`+TopicTable(t)+`" WHERE uuid = ? LIMIT 1`), id).Scan(&one)
		if err == nil {
			return Notification{ID: id, Status: NotificationPending}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return n, fmt.Errorf("reading outbox: %w", err)
		}
	}
	return n, ErrNotFound
}

// ClaimIdempotencyKey binds key to notificationID inside tx. It returns the id already
// bound when the key was used before (and then the caller must not write again).
func (s *Notifications) ClaimIdempotencyKey(ctx context.Context, tx *sql.Tx, key, notificationID string) (string, bool, error) {
	res, err := tx.ExecContext(ctx, s.db.q(`INSERT INTO herald_idempotency_keys (idem_key, notification_id, created_at) VALUES (?, ?, ?)`+
		s.db.onConflictNothing("idem_key")), key, notificationID, now())
	if err != nil {
		return "", false, fmt.Errorf("claiming idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return notificationID, true, nil
	}
	var existing string
	if err := tx.QueryRowContext(ctx, s.db.q(`SELECT notification_id FROM herald_idempotency_keys WHERE idem_key = ?`), key).Scan(&existing); err != nil {
		return "", false, fmt.Errorf("reading idempotency key: %w", err)
	}
	return existing, false, nil
}

// CountPrefix counts the events whose id starts with prefix that the fan-out finished
// (fanned out, skipped) plus those poisoned.
func (s *Notifications) CountPrefix(ctx context.Context, prefix string) (int, error) {
	var n, p int
	like := likePrefix(prefix)
	if err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT COUNT(*) FROM herald_notifications WHERE id LIKE ? ESCAPE '!'`), like).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting notifications: %w", err)
	}
	if err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT COUNT(DISTINCT message_uuid) FROM herald_poison WHERE handler = 'fanout'
		AND message_uuid LIKE ? ESCAPE '!'`), like).Scan(&p); err != nil {
		return 0, fmt.Errorf("counting poisoned events: %w", err)
	}
	return n + p, nil
}
