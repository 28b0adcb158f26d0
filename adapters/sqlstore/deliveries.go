package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/notify"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// Execer runs statements: a *sql.DB or a *sql.Tx.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Deliveries is the delivery store: one row per (event, channel, address).
type Deliveries struct{ db *DB }

// Deliveries returns the delivery store.
func (db *DB) Deliveries() *Deliveries { return &Deliveries{db: db} }

// InsertQueued records new deliveries as queued inside tx; existing ones are kept
// unchanged, so a redelivered event does not reset them.
func (s *Deliveries) InsertQueued(ctx context.Context, tx Execer, ds []notify.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	t := now()
	if s.db.Dialect == Postgres { // one statement text for any count (batch.go)
		if _, err := tx.ExecContext(ctx, `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, recipient_id, address,
		fallback_of, occurred_at, status, created_at, updated_at) SELECT *, $10, $11::bigint, $11::bigint FROM unnest($1::text[],
		$2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])`+s.db.onConflictNothing("id"),
			deliveryArgsPG(ds, notify.StatusQueued, t)...); err != nil {
			return fmt.Errorf("inserting deliveries: %w", err)
		}
		return nil
	}
	if tx, ok := tx.(*sql.Tx); ok && s.db.Dialect == SQLite { // one prepared row at a time (batch.go)
		err := s.db.execEach(ctx, tx, `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, recipient_id, address,
		status, occurred_at, created_at, updated_at, fallback_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`+s.db.onConflictNothing("id"),
			len(ds), func(i int) []any { return deliveryRow(ds[i], notify.StatusQueued, t) })
		if err != nil {
			return fmt.Errorf("inserting deliveries: %w", err)
		}
		return nil
	}
	args := make([]any, 0, len(ds)*12)
	for _, d := range ds {
		args = append(args, deliveryRow(d, notify.StatusQueued, t)...)
	}
	q := `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, recipient_id, address,
		status, occurred_at, created_at, updated_at, fallback_of) VALUES ` + valueRows(len(ds), 12) + s.db.onConflictNothing("id")
	if _, err := tx.ExecContext(ctx, s.db.q(q), args...); err != nil {
		return fmt.Errorf("inserting deliveries: %w", err)
	}
	return nil
}

// deliveryRow is d's values in the column order of the SQLite and MySQL inserts (id,
// event_id, event_type, channel, lane, recipient_id, address, status, occurred_at,
// created_at, updated_at, fallback_of), with status st at time t.
func deliveryRow(d notify.Delivery, st notify.Status, t int64) []any {
	return []any{d.ID, d.EventID, d.EventType, string(d.Channel), string(d.Lane), d.RecipientID,
		string(d.Address), string(st), d.OccurredAt.UnixMicro(), t, t, d.FallbackOf}
}

// deliveryArgsPG returns the arguments of PostgreSQL's insert of deliveries with
// status st at time t: a column array each, the status, the time.
func deliveryArgsPG(ds []notify.Delivery, st notify.Status, t int64) []any {
	var c [8][]string
	occ := make([]int64, len(ds))
	for i, d := range ds {
		c[0], c[1], c[2], c[3] = append(c[0], d.ID), append(c[1], d.EventID), append(c[2], d.EventType), append(c[3], string(d.Channel))
		c[4], c[5], c[6], c[7] = append(c[4], string(d.Lane)), append(c[5], d.RecipientID), append(c[6], string(d.Address)), append(c[7], d.FallbackOf)
		occ[i] = d.OccurredAt.UnixMicro()
	}
	return []any{c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], occ, string(st), t}
}

// recordedQuery reads recorded deliveries by event (eachRowIn; MySQL: recordedInMySQL).
const (
	recordedSelect = `SELECT id, event_id, channel, address FROM herald_deliveries`
	recordedQuery  = recordedSelect + ` WHERE event_id `
)

// recorded reads which of the events, channels and addresses of ds are recorded under
// which delivery id, so that recordedSet.keep can leave out the deliveries recorded
// under another id: ids made before they sorted by time (notify.DeliveryID) differ
// from the ids a redelivered event gets now, and such a delivery must not be recorded,
// and sent, twice. A delivery recorded under its own id is kept (the insert ignores
// it). Read by event id through the event index (eachRowIn); a group holds at most
// groupMax fan-outs. SQLite and MySQL; on PostgreSQL the insert itself skips them
// (insertUnrecordedPG).
func (s *Deliveries) recorded(ctx context.Context, tx *sql.Tx, ds []notify.Delivery) (recordedSet, error) {
	recorded := recordedSet{}
	if len(ds) == 0 {
		return recorded, nil
	}
	if err := s.db.eachRowIn(ctx, tx, recordedQuery, eventIDs(ds), recorded.scan); err != nil {
		return nil, fmt.Errorf("reading recorded deliveries: %w", err)
	}
	return recorded, nil
}

// recordedSet holds the ids of recorded deliveries by event, channel and address (rows
// of recordedQuery).
type recordedSet map[recordedTarget]string

type recordedTarget struct{ event, channel, address string }

func (m recordedSet) scan(rows rowScanner) error {
	var id string
	var t recordedTarget
	if err := rows.Scan(&id, &t.event, &t.channel, &t.address); err != nil {
		return err
	}
	m[t] = id
	return nil
}

// keepUnrecorded returns xs without the deliveries recorded under another id;
// delivery gives each one's delivery.
func keepUnrecorded[T any](m recordedSet, xs []T, delivery func(*T) *notify.Delivery) []T {
	if len(m) == 0 {
		return xs
	}
	kept := xs[:0:0]
	for i := range xs {
		d := delivery(&xs[i])
		if id, ok := m[recordedTarget{d.EventID, string(d.Channel), string(d.Address)}]; ok && id != d.ID {
			continue
		}
		kept = append(kept, xs[i])
	}
	return kept
}

// keep returns ds without the deliveries recorded under another id.
func (m recordedSet) keep(ds []notify.Delivery) []notify.Delivery {
	return keepUnrecorded(m, ds, func(d *notify.Delivery) *notify.Delivery { return d })
}

// keepInbox is keep for inbox deliveries.
func (m recordedSet) keepInbox(ibs []InboxDelivery) []InboxDelivery {
	return keepUnrecorded(m, ibs, func(ib *InboxDelivery) *notify.Delivery { return &ib.Delivery })
}

// eventIDs returns the events of ds, each once.
func eventIDs(ds []notify.Delivery) []any {
	events := make([]any, 0, len(ds))
	seen := map[string]bool{}
	for _, d := range ds {
		if !seen[d.EventID] {
			seen[d.EventID] = true
			events = append(events, d.EventID)
		}
	}
	return events
}

// IDFor returns the id under which the delivery of event eventID on channel ch to
// address is recorded; ErrNotFound when there is none. The delivery handler asks when a
// message's id is unknown: the delivery may have been recorded under an id made before
// ids sorted by time (notify.DeliveryID).
func (s *Deliveries) IDFor(ctx context.Context, eventID string, ch notify.Channel, address notify.Address) (string, error) {
	var id string
	err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT id FROM herald_deliveries WHERE event_id = ? AND channel = ? AND address = ?`),
		eventID, string(ch), string(address)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("finding delivery: %w", err)
	}
	return id, nil
}

// ClaimState is the outcome of a claim.
type ClaimState int

// Claim outcomes.
const (
	// Claimed: the caller holds the lease and may send.
	Claimed ClaimState = iota
	// ClaimDone: the delivery is terminal; nothing to do (a redelivered message).
	ClaimDone
	// ClaimBusy: another worker holds an unexpired lease.
	ClaimBusy
)

// Claim is the result of Deliveries.Claim.
type Claim struct {
	State      ClaimState
	Status     notify.Status
	Attempts   int       // counting this one when Claimed
	LeaseUntil time.Time // when ClaimBusy: when the other worker's lease ends
	CreatedAt  time.Time
}

// Claim takes a delivery for sending: a queued delivery, or one whose previous
// holder's lease ran out (it crashed or hung), moves to sending under owner's lease
// and counts an attempt. It is the deduplication step every instance shares: the
// lease is released on failure (Release) and committed on success (MarkSent), so a
// failure never drops a message and a success is never sent twice by another worker.
func (s *Deliveries) Claim(ctx context.Context, id, owner string, lease time.Duration) (Claim, error) {
	r := &groupReq{kind: batchClaim, arg: claimArg{id: id, owner: owner, lease: lease}}
	if err := s.db.submit(ctx, r); err != nil {
		return Claim{}, fmt.Errorf("claiming delivery %s: %w", id, err)
	}
	out := r.out.(claimOut)
	if out.err != nil {
		return Claim{}, fmt.Errorf("claiming delivery %s: %w", id, out.err)
	}
	return out.c, nil
}

// Release gives a claimed delivery back (status queued) after a failure, with the
// reason. counted=false takes back the attempt the claim counted: the provider was
// never called (its breaker was open, or a throttle deferred the send). Only the
// lease's owner can release it.
func (s *Deliveries) Release(ctx context.Context, id, owner, reason string, counted bool) error {
	undo := 0
	if !counted {
		undo = 1
	}
	err := s.db.Group(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.db.execP(ctx, tx, `UPDATE herald_deliveries SET status = ?, last_error = ?, attempts = attempts - ?,
		lease_owner = '', lease_until = 0, updated_at = ? WHERE id = ? AND status = ? AND lease_owner = ?`,
			string(notify.StatusQueued), truncate(reason), undo, now(), id, string(notify.StatusSending), owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing delivery %s: %w", id, err)
	}
	return nil
}

// MarkSent records the provider's acceptance and ends the lease. When the provider
// may report on the message by its own id (r.Reports), the id is kept for
// RecordReport, in the same transaction.
func (s *Deliveries) MarkSent(ctx context.Context, id string, r notify.Receipt, at time.Time) error {
	a := sentArg{id: id, r: r, at: at}
	var err error
	if r.Reports {
		err = s.db.Group(ctx, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := s.db.execP(ctx, tx, sentUpdate, a.row(now())...); err != nil {
				return err
			}
			if r.ProviderMessageID != "" {
				if _, err := s.db.execP(ctx, tx, `INSERT INTO herald_message_ids (provider, message_id, delivery_id) VALUES (?, ?, ?)`+
					s.db.onConflictUpdate("provider, message_id", "delivery_id"), r.Provider, r.ProviderMessageID, id); err != nil {
					return err
				}
			}
			return s.applyEarlyReport(ctx, tx, id, r, at)
		})
	} else {
		err = s.db.submit(ctx, &groupReq{kind: batchSent, arg: a})
	}
	if err != nil {
		return fmt.Errorf("marking delivery %s sent: %w", id, err)
	}
	return nil
}

// RecordReport applies a provider's delivery report to the delivery it names (by
// reference = delivery id, or by the provider's message id, kept by MarkSent): sent
// becomes delivered or undelivered. It returns false when no sent delivery of that
// provider matches; a report by message id is then kept for its send's record
// (keepEarlyReport). Either way it reads one delivery through a key.
func (s *Deliveries) RecordReport(ctx context.Context, provider string, r notify.Report) (bool, error) {
	st, reason := notify.StatusDelivered, ""
	if !r.Delivered {
		st, reason = notify.StatusUndelivered, truncate(r.Reason)
	}
	update := func(target string, args ...any) (bool, error) {
		res, err := s.db.W.ExecContext(ctx, s.db.q(`UPDATE herald_deliveries SET status = ?, problem = ?, last_error = ?, updated_at = ?
			WHERE provider = ? AND status IN (?, ?, ?) AND id = `+target), slices.Concat([]any{string(st), problemOf(st), reason, now(),
			provider, string(notify.StatusSent), string(notify.StatusDelivered), string(notify.StatusUndelivered)}, args)...)
		if err != nil {
			return false, fmt.Errorf("recording delivery report: %w", err)
		}
		n, err := res.RowsAffected()
		return n > 0, err
	}
	if r.Reference != "" {
		ok, err := update("?", r.Reference)
		if ok || err != nil {
			return ok, err
		}
		if r.MessageID == "" {
			return false, s.keepEarlyReport(ctx, provider, earlyKey(r.Reference), r)
		}
	}
	if r.MessageID == "" {
		return false, nil
	}
	ok, err := update(`(SELECT delivery_id FROM herald_message_ids WHERE provider = ? AND message_id = ?)`, provider, r.MessageID)
	if ok || err != nil {
		return ok, err
	}
	return false, s.keepEarlyReport(ctx, provider, r.MessageID, r)
}

// earlyKey is the key under which an early report naming only its delivery (by
// reference) is kept among the reports kept by the provider's message id.
func earlyKey(deliveryID string) string { return "ref:" + deliveryID }

// earlyReportTTL is how long a report that matched no delivery is kept for its send to
// be recorded. Only a report received after the send (earlyReportSkew) is applied, so
// an SMSC reusing the id for another message does not inherit it.
const earlyReportTTL = 10 * time.Minute

// keepEarlyReport keeps, under key (the provider's message id, or earlyKey of the
// delivery id), a report that matched no delivery: an SMSC may report a rejection
// within milliseconds, before the sent record that names the message has committed.
// MarkSent applies it (applyEarlyReport). Reports older than earlyReportTTL go,
// matched or not.
func (s *Deliveries) keepEarlyReport(ctx context.Context, provider, key string, r notify.Report) error {
	delivered := 0
	if r.Delivered {
		delivered = 1
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.q(`DELETE FROM herald_early_reports WHERE received_at < ?`),
			now()-earlyReportTTL.Microseconds()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.db.q(`INSERT INTO herald_early_reports (provider, message_id, delivered, reason, received_at)
			VALUES (?, ?, ?, ?, ?)`+s.db.onConflictUpdate("provider, message_id", "delivered", "reason", "received_at")),
			provider, key, delivered, truncate(r.Reason), now())
		return err
	})
	if err != nil {
		return fmt.Errorf("keeping an early delivery report: %w", err)
	}
	return nil
}

// earlyReportSkew is how long before the provider's acceptance (sent_at) a kept report
// may have been received and still be about that send: a report cannot come before
// the message was accepted, but the two times are taken on different goroutines.
const earlyReportSkew = time.Minute

// applyEarlyReport applies, in the sent record's transaction, a report kept for the
// message accepted at at, before its send was recorded: kept by the provider's message
// id or by the delivery id (earlyKey); the later one when both were.
func (s *Deliveries) applyEarlyReport(ctx context.Context, tx *sql.Tx, id string, r notify.Receipt, at time.Time) error {
	var delivered int
	var reason string
	err := tx.QueryRowContext(ctx, s.db.q(`SELECT delivered, reason FROM herald_early_reports WHERE provider = ? AND message_id IN (?, ?)
		AND received_at >= ? ORDER BY received_at DESC LIMIT 1`), r.Provider, r.ProviderMessageID, earlyKey(id),
		at.Add(-earlyReportSkew).UnixMicro()).Scan(&delivered, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	st := notify.StatusDelivered
	if delivered == 0 {
		st = notify.StatusUndelivered
	}
	if _, err := tx.ExecContext(ctx, s.db.q(`UPDATE herald_deliveries SET status = ?, problem = ?, last_error = ?, updated_at = ?
		WHERE id = ?`), string(st), problemOf(st), reason, now(), id); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.db.q(`DELETE FROM herald_early_reports WHERE provider = ? AND message_id IN (?, ?)`),
		r.Provider, r.ProviderMessageID, earlyKey(id))
	return err
}

// MarkEnded sets a terminal status other than sent (failed, expired, poisoned) with the
// reason. A delivery already sent keeps its status.
func (s *Deliveries) MarkEnded(ctx context.Context, id string, st notify.Status, reason string) error {
	err := s.db.Group(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.db.execP(ctx, tx, `UPDATE herald_deliveries SET status = ?, problem = ?, last_error = ?, lease_owner = '',
		lease_until = 0, updated_at = ? WHERE id = ? AND status NOT IN (?, ?)`,
			string(st), problemOf(st), truncate(reason), now(), id, string(notify.StatusSent), string(notify.StatusDelivered))
		return err
	})
	if err != nil {
		return fmt.Errorf("marking delivery %s %s: %w", id, st, err)
	}
	return nil
}

// problemStatusList are the statuses of deliveries that ended without reaching their
// recipient, the ones an operator looks for. A delivery in one of them has it in its
// problem column as well; every other delivery has "" there. problem is indexed where
// status is not (PostgreSQL, deliveriesHOT), and no update on the hot path writes it.
const problemStatusList = `'` + string(notify.StatusFailed) + `', '` + string(notify.StatusExpired) + `', '` +
	string(notify.StatusPoisoned) + `', '` + string(notify.StatusUndelivered) + `'`

// problemOf is the problem column's value for status st.
func problemOf(st notify.Status) string {
	switch st {
	case notify.StatusFailed, notify.StatusExpired, notify.StatusPoisoned, notify.StatusUndelivered:
		return string(st)
	}
	return ""
}

func truncate(s string) string {
	if len(s) > 1000 {
		return s[:1000]
	}
	return s
}

const deliveryColumns = `id, event_id, event_type, channel, lane, recipient_id, address, status, attempts,
	last_error, provider, provider_message_id, occurred_at, created_at, updated_at, sent_at, fallback_of`

func scanDelivery(sc interface{ Scan(...any) error }) (notify.Delivery, error) {
	var d notify.Delivery
	var ch, lane, addr, st string
	var occ, created, updated int64
	var sent sql.NullInt64
	if err := sc.Scan(&d.ID, &d.EventID, &d.EventType, &ch, &lane, &d.RecipientID, &addr, &st, &d.Attempts,
		&d.LastError, &d.Provider, &d.ProviderMessageID, &occ, &created, &updated, &sent, &d.FallbackOf); err != nil {
		return d, err
	}
	d.Channel, d.Lane, d.Address, d.Status = notify.Channel(ch), notify.Lane(lane), notify.Address(addr), notify.Status(st)
	d.OccurredAt, d.CreatedAt, d.UpdatedAt = fromMicros(occ), fromMicros(created), fromMicros(updated)
	if sent.Valid {
		t := fromMicros(sent.Int64)
		d.SentAt = &t
	}
	return d, nil
}

// Get returns one delivery.
func (s *Deliveries) Get(ctx context.Context, id string) (notify.Delivery, error) {
	return s.getFrom(ctx, s.db.R, id)
}

func (s *Deliveries) getFrom(ctx context.Context, pool *sql.DB, id string) (notify.Delivery, error) {
	d, err := scanDelivery(pool.QueryRowContext(ctx, s.db.q(`SELECT `+deliveryColumns+` FROM herald_deliveries WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	return d, err
}

// ByEvent returns the deliveries of one event or notification.
func (s *Deliveries) ByEvent(ctx context.Context, eventID string) ([]notify.Delivery, error) {
	return s.query(ctx, `SELECT `+deliveryColumns+` FROM herald_deliveries WHERE event_id = ? ORDER BY channel, id`, eventID)
}

func (s *Deliveries) query(ctx context.Context, q string, args ...any) ([]notify.Delivery, error) {
	rows, err := s.db.R.QueryContext(ctx, s.db.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	defer rows.Close()
	out := []notify.Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("listing deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeliveryFilter selects deliveries for listing.
type DeliveryFilter struct {
	Status  notify.Status
	Channel notify.Channel
	Cursor  string // from the previous page's NextCursor
	Limit   int    // 1..500, default 50
}

// ErrBadCursor is returned for a cursor Herald did not produce.
var ErrBadCursor = errors.New("invalid cursor")

// List returns a page of deliveries, oldest first, and the cursor of the next page
// ("" on the last page).
//
// On PostgreSQL the in-flight statuses (queued, sending) have no index (deliveriesHOT),
// so a page of them walks the deliveries in creation order, at most 10,000 of them: a
// page may then hold fewer deliveries than asked, even none, with a cursor to walk on
// from.
func (s *Deliveries) List(ctx context.Context, f DeliveryFilter) ([]notify.Delivery, string, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var where []string
	var args []any
	if p := problemOf(f.Status); p != "" {
		// The literal lets PostgreSQL use its partial index with any plan.
		where = append(where, "problem <> '' AND problem = ?")
		args = append(args, p)
	} else if f.Status != "" {
		where = append(where, "problem = ''")
	}
	if f.Channel != "" {
		where = append(where, "channel = ?")
		args = append(args, string(f.Channel))
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at > ? OR (created_at = ? AND id > ?))")
		args = append(args, at, at, id)
	}
	if s.db.Dialect == Postgres && (f.Status == notify.StatusQueued || f.Status == notify.StatusSending) {
		return s.listWalk(ctx, f, where, args)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(f.Status))
	}
	q := `SELECT ` + deliveryColumns + ` FROM herald_deliveries`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at, id LIMIT " + strconv.Itoa(f.Limit+1)
	ds, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ds) > f.Limit {
		ds = ds[:f.Limit]
		last := ds[len(ds)-1]
		next = encodeCursor(last.CreatedAt.UnixMicro(), last.ID)
	}
	return ds, next, nil
}

// defaultInFlightScan is how many deliveries a page of an in-flight status reads at
// most on PostgreSQL.
const defaultInFlightScan = 10000

// listWalk is List for an in-flight status on PostgreSQL: it reads the next
// defaultInFlightScan deliveries matching where, in creation order, and keeps those in
// status f.Status. When the walk ends before the page is full, the cursor points after
// the last delivery read.
func (s *Deliveries) listWalk(ctx context.Context, f DeliveryFilter, where []string, args []any) ([]notify.Delivery, string, error) {
	scan := s.db.inFlightScan
	if scan == 0 {
		scan = defaultInFlightScan
	}
	q := `WITH scanned AS (SELECT created_at, id, status FROM herald_deliveries WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY created_at, id LIMIT ` + strconv.Itoa(scan) + `)
		SELECT w.created_at, w.id, w.status = ?, (SELECT COUNT(*) FROM scanned) FROM scanned w
		WHERE w.status = ? OR (w.created_at, w.id) = (SELECT created_at, id FROM scanned ORDER BY created_at DESC, id DESC LIMIT 1)
		ORDER BY w.created_at, w.id LIMIT ` + strconv.Itoa(f.Limit+2)
	args = append(args, string(f.Status), string(f.Status))
	rows, err := s.db.R.QueryContext(ctx, s.db.q(q), args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing deliveries: %w", err)
	}
	defer rows.Close()
	type key struct {
		at int64
		id string
	}
	var hits []key
	var last key
	scanned := 0
	for rows.Next() {
		var hit bool
		if err := rows.Scan(&last.at, &last.id, &hit, &scanned); err != nil {
			return nil, "", fmt.Errorf("listing deliveries: %w", err)
		}
		if hit {
			hits = append(hits, last)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing deliveries: %w", err)
	}
	next := ""
	switch {
	case len(hits) > f.Limit:
		hits = hits[:f.Limit]
		next = encodeCursor(hits[f.Limit-1].at, hits[f.Limit-1].id)
	case scanned == scan:
		next = encodeCursor(last.at, last.id)
	}
	if len(hits) == 0 {
		return []notify.Delivery{}, next, nil
	}
	ids := []any{string(f.Status)}
	for _, h := range hits {
		ids = append(ids, h.id)
	}
	// A delivery that left the status since the walk read it is left out.
	ds, err := s.query(ctx, `SELECT `+deliveryColumns+` FROM herald_deliveries WHERE status = ? AND id IN (`+
		placeholders(len(hits))+`) ORDER BY created_at, id`, ids...)
	return ds, next, err
}

func encodeCursor(at int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at, 10) + "|" + id))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	at, id, ok := strings.Cut(string(b), "|")
	if !ok {
		return 0, "", ErrBadCursor
	}
	n, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	return n, id, nil
}

// Pending counts the deliveries of events whose id starts with prefix that have not
// ended (queued or sending). It reads the status index on MySQL and SQLite, and the
// prefix's deliveries on PostgreSQL (which has no status index, deliveriesHOT).
func (s *Deliveries) Pending(ctx context.Context, prefix string) (int, error) {
	var n int
	err := s.db.R.QueryRowContext(ctx, s.pendingQuery(), string(notify.StatusQueued), string(notify.StatusSending), likePrefix(prefix)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting pending deliveries: %w", err)
	}
	return n, nil
}

// pendingQuery is Pending's statement. MySQL is told to use the status index: a
// delivery is inserted queued and updated soon after, so statistics taken while a run's
// deliveries were queued stay behind, and MariaDB then counted the few pending ones by
// reading every delivery of the run (loadgen asks every 200 ms to 2 s: 4.1 s of
// MariaDB's 50 s of statements in a 100,000-event catch-up; ADR 0016).
func (s *Deliveries) pendingQuery() string {
	from := `herald_deliveries`
	if s.db.Dialect == MySQL {
		from += ` FORCE INDEX (herald_deliveries_status)`
	}
	return s.db.q(`SELECT COUNT(*) FROM ` + from + ` WHERE status IN (?, ?) AND event_id LIKE ? ESCAPE '!'`)
}

// Summary counts deliveries of the events whose id starts with prefix.
type Summary struct {
	Total     int
	ByStatus  map[notify.Status]int
	ByChannel map[notify.Channel]int
	// With the full summary only: Retries are the provider calls beyond each delivery's
	// first, Fallbacks the deliveries created as another's fallback.
	Retries   int
	Fallbacks int
}

// Summarize counts the deliveries of events whose id starts with prefix by status and
// channel; full adds retries and fallbacks (more queries: for end-of-run
// reports, not for polling — poll Pending).
func (s *Deliveries) Summarize(ctx context.Context, prefix string, full bool) (Summary, error) {
	sum := Summary{ByStatus: map[notify.Status]int{}, ByChannel: map[notify.Channel]int{}}
	rows, err := s.db.R.QueryContext(ctx, s.db.q(`SELECT status, channel, COUNT(*) FROM herald_deliveries
		WHERE event_id LIKE ? ESCAPE '!' GROUP BY status, channel`), likePrefix(prefix))
	if err != nil {
		return sum, fmt.Errorf("summarizing deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st, ch string
		var n int
		if err := rows.Scan(&st, &ch, &n); err != nil {
			return sum, err
		}
		sum.Total += n
		sum.ByStatus[notify.Status(st)] += n
		sum.ByChannel[notify.Channel(ch)] += n
	}
	if err := rows.Err(); err != nil {
		return sum, err
	}
	if !full {
		return sum, nil
	}
	if err := s.db.R.QueryRowContext(ctx, s.db.q(`SELECT COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN fallback_of <> '' THEN 1 ELSE 0 END), 0) FROM herald_deliveries WHERE event_id LIKE ? ESCAPE '!'`),
		likePrefix(prefix)).Scan(&sum.Retries, &sum.Fallbacks); err != nil {
		return sum, fmt.Errorf("summarizing retries: %w", err)
	}
	return sum, nil
}

// DeliveryLatency is the path of one sent delivery, in microseconds from the event's
// occurred_at (loadgen's core sets it at the outbox commit): to the fan-out's record of
// the delivery (created_at), and to the provider's acceptance (sent_at).
type DeliveryLatency struct {
	Channel notify.Channel
	Record  int64
	Sent    int64
}

// Latencies calls fn with the latencies of every sent delivery of the events whose id
// starts with prefix and that occurred at or after since (zero: all), streaming the
// rows: a million events' deliveries are never held in memory at once.
func (s *Deliveries) Latencies(ctx context.Context, prefix string, since time.Time, fn func(DeliveryLatency)) error {
	from := int64(0)
	if !since.IsZero() {
		from = since.UnixMicro()
	}
	rows, err := s.db.R.QueryContext(ctx, s.db.q(`SELECT channel, created_at - occurred_at, sent_at - occurred_at FROM herald_deliveries
		WHERE event_id LIKE ? ESCAPE '!' AND sent_at IS NOT NULL AND occurred_at >= ?`), likePrefix(prefix), from)
	if err != nil {
		return fmt.Errorf("reading latencies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l DeliveryLatency
		var ch string
		if err := rows.Scan(&ch, &l.Record, &l.Sent); err != nil {
			return fmt.Errorf("reading latencies: %w", err)
		}
		l.Channel = notify.Channel(ch)
		fn(l)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading latencies: %w", err)
	}
	return nil
}
