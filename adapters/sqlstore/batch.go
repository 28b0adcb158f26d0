package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/notify"
)

// Batchable writes: the hot path's writes of one kind that queue together for a group
// transaction (group.go) run as one multi-row statement instead of one statement each
// on PostgreSQL and MySQL, where a statement costs a plan (~80 µs on PostgreSQL here)
// and a row in a multi-row statement a few µs; there the group's statements are sent in
// one round trip (PostgreSQL: pipeline.go, MySQL: mysql_group.go). SQLite, in process,
// has no round trip: there each row runs a cached one-row statement (execEach), since a
// multi-row statement would be parsed again for every batch size. The functions here
// run a kind in a *sql.Tx, on SQLite.

type batchKind int

const (
	batchClaim batchKind = iota
	batchSent
	batchSandbox
	batchInbox
	batchFanOut
	batchExec // a statement whose result nobody reads (a subscription's ack); arg is a wsql.Query in the dialect's placeholders
	numBatchKinds
)

func (db *DB) runBatch(ctx context.Context, tx *sql.Tx, k batchKind, rs []*groupReq) error {
	switch k {
	case batchClaim:
		return db.claimBatch(ctx, tx, rs)
	case batchSent:
		return db.sentBatch(ctx, tx, rs)
	case batchSandbox:
		return db.sandboxBatch(ctx, tx, rs)
	case batchInbox:
		return db.inboxBatch(ctx, tx, rs)
	case batchFanOut:
		return db.fanOutBatch(ctx, tx, rs)
	case batchExec:
		for _, r := range rs {
			q := r.arg.(wsql.Query)
			if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("sqlstore: unknown batch kind %d", k)
}

// anyStrings converts a list of string arguments to the []string a PostgreSQL text[]
// parameter takes.
func anyStrings(xs []any) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.(string)
	}
	return out
}

// On PostgreSQL the multi-row statements take one array per column (unnest, = ANY):
// one statement text whatever the batch size, so each is prepared once per connection
// and its plan is reused, where a VALUES list of n rows is a new statement for each n.

// placeholders returns "?,?,...,?" (n of them).
func placeholders(n int) string { return repeatList("?", n) }

// valueRows returns the rows of a multi-row VALUES list: "(?,?),(?,?)" for 2 rows of 2
// columns.
func valueRows(rows, cols int) string { return repeatList("("+placeholders(cols)+")", rows) }

// repeatList returns n copies of item separated by commas.
func repeatList(item string, n int) string {
	return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
}

// sqlQuerier runs queries: a *sql.DB or a *sql.Tx.
type sqlQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// eachRow runs a query on q and calls scan for each row.
func eachRow(ctx context.Context, q sqlQuerier, query string, args []any, scan func(rowScanner) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	return scanRows(rows, err, scan)
}

// scanRows calls scan for each of rows (the result of a query that failed with err or
// not) and closes them.
func scanRows(rows *sql.Rows, err error, scan func(rowScanner) error) error {
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// eachRowIn runs query, which ends in "WHERE <column> ", for the rows whose text column
// is one of values, and calls scan for each row: "= ?" once per value, a cached
// statement (queryEach). SQLite; PostgreSQL's group transactions (pipeline.go) read by
// value with probeEachPG, MySQL's (mysql_group.go) with an IN list.
func (db *DB) eachRowIn(ctx context.Context, tx *sql.Tx, query string, values []any, scan func(rowScanner) error) error {
	return db.queryEach(ctx, tx, query+`= ?`, len(values), func(i int) []any { return values[i : i+1] }, scan)
}

// notFound returns the ids (strings) that are not keys of found.
func notFound[V any](ids []any, found map[string]V) []any {
	var out []any
	for _, id := range ids {
		if _, ok := found[id.(string)]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// execEach runs the one-row statement query in tx once per row (args(i) gives row i's
// arguments), prepared once and cached. For SQLite, which runs in process, a row then
// costs a bind and a step, where a multi-row statement is parsed again for each batch
// size: parsing was a fifth of the group committer's time.
func (db *DB) execEach(ctx context.Context, tx *sql.Tx, query string, n int, args func(i int) []any) error {
	st, err := db.stmtOn(ctx, tx, query) //nolint:sqlclosecheck // cached; closed by DB.Close
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if _, err := st.ExecContext(ctx, args(i)...); err != nil {
			return err
		}
	}
	return nil
}

// queryEach is execEach for a statement that returns rows: scan is called for each.
func (db *DB) queryEach(ctx context.Context, tx *sql.Tx, query string, n int, args func(i int) []any, scan func(rowScanner) error) error {
	st, err := db.stmtOn(ctx, tx, query) //nolint:sqlclosecheck // cached; closed by DB.Close
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		rows, err := st.QueryContext(ctx, args(i)...)
		if err := scanRows(rows, err, scan); err != nil {
			return err
		}
	}
	return nil
}

type claimArg struct {
	id, owner string
	lease     time.Duration
}

type claimOut struct {
	c   Claim
	err error // ErrNotFound: a result, not a failure of the batch
}

// claims is the claims of one lease (owner and duration) in a group transaction.
type claims struct {
	rs    []*groupReq
	owner string
	ids   []any
	until int64 // the lease's end (now + lease, to the microsecond)
	set   []any // the UPDATE's arguments before the ids
	free  []any // and after them
	found map[string]*claimRow
}

type claimRow struct {
	status, owner  string
	attempts       int
	until, created int64
	taken          bool
}

// The claim: one UPDATE shape on every dialect, "WHERE id" completed by each: an array
// on PostgreSQL (one statement text whatever the batch size), one row at a time on
// SQLite, an IN list on MySQL. The claimed rows come back from the UPDATE itself where
// the database can return them (PostgreSQL, SQLite); the others (already sent, leased
// elsewhere, unknown: rare) are read afterwards. MySQL returns none: a SELECT reads
// them all.
const (
	claimCols   = `id, status, attempts, lease_owner, lease_until, created_at`
	claimUpdate = `UPDATE herald_deliveries SET status = ?, attempts = attempts + 1, lease_owner = ?,
			lease_until = ?, updated_at = ? WHERE id `
	claimFree     = ` AND (status = ? OR (status = ? AND lease_until < ?))`
	claimUpdatePG = `UPDATE herald_deliveries SET status = $1, attempts = attempts + 1, lease_owner = $2,
			lease_until = $3, updated_at = $4 WHERE id = ANY($5::text[]) AND (status = $6 OR (status = $7 AND lease_until < $8)) RETURNING ` + claimCols
	claimReadQuery = `SELECT ` + claimCols + ` FROM herald_deliveries WHERE id `
)

// groupClaims groups claim requests by lease, in the order of their first request.
func groupClaims(rs []*groupReq) []*claims {
	type leaseKey struct {
		owner string
		lease time.Duration
	}
	byKey := map[leaseKey]*claims{}
	var out []*claims
	for _, r := range rs {
		a := r.arg.(claimArg)
		k := leaseKey{a.owner, a.lease}
		c := byKey[k]
		if c == nil {
			t := now()
			c = &claims{owner: a.owner, until: t + a.lease.Microseconds(), found: map[string]*claimRow{}}
			c.set = []any{string(notify.StatusSending), c.owner, c.until, t}
			c.free = []any{string(notify.StatusQueued), string(notify.StatusSending), t}
			byKey[k] = c
			out = append(out, c)
		}
		c.rs = append(c.rs, r)
		c.ids = append(c.ids, a.id)
	}
	return out
}

func (c *claims) updateArgsPG() []any {
	return slices.Concat(c.set, []any{anyStrings(c.ids)}, c.free)
}

// scan reads a row of claimCols.
func (c *claims) scan(row rowScanner) error {
	var id string
	var w claimRow
	err := row.Scan(&id, &w.status, &w.attempts, &w.owner, &w.until, &w.created)
	c.found[id] = &w
	return err
}

// resolve tells each request what it got: a row this batch leased carries its owner
// and its lease end; the first request of an id gets it, a repeat of the id in the
// same batch finds it busy.
func (c *claims) resolve() {
	for _, r := range c.rs {
		w := c.found[r.arg.(claimArg).id]
		if w == nil {
			r.out = claimOut{err: ErrNotFound}
			continue
		}
		st := notify.Status(w.status)
		cl := Claim{State: ClaimBusy, Status: st, Attempts: w.attempts, LeaseUntil: fromMicros(w.until), CreatedAt: fromMicros(w.created)}
		switch {
		case st == notify.StatusSending && w.owner == c.owner && w.until == c.until && !w.taken:
			cl.State, w.taken = Claimed, true
		case st.Terminal():
			cl.State = ClaimDone
		}
		r.out = claimOut{c: cl}
	}
}

// claimBatch claims deliveries on SQLite (PostgreSQL: claimPG, MySQL: claimMySQL): a
// prepared UPDATE … RETURNING per row that is free, then one read of the rows it did
// not return.
func (db *DB) claimBatch(ctx context.Context, tx *sql.Tx, rs []*groupReq) error {
	for _, c := range groupClaims(rs) {
		err := db.queryEach(ctx, tx, claimUpdate+`= ?`+claimFree+` RETURNING `+claimCols, len(c.ids), func(i int) []any {
			return slices.Concat(c.set, c.ids[i:i+1], c.free)
		}, c.scan)
		if err != nil {
			return fmt.Errorf("claiming %d deliveries: %w", len(c.ids), err)
		}
		if missing := notFound(c.ids, c.found); len(missing) > 0 {
			if err := db.eachRowIn(ctx, tx, claimReadQuery, missing, c.scan); err != nil {
				return fmt.Errorf("reading %d claims: %w", len(c.ids), err)
			}
		}
		c.resolve()
	}
	return nil
}

type sentArg struct {
	id string
	r  notify.Receipt
	at time.Time
}

// sentBatch marks deliveries sent: one prepared UPDATE per row on SQLite (PostgreSQL:
// sentPG, MySQL: sentMySQL).
func (db *DB) sentBatch(ctx context.Context, tx *sql.Tx, rs []*groupReq) error {
	t := now()
	return db.execEach(ctx, tx, sentUpdate, len(rs), func(i int) []any { return rs[i].arg.(sentArg).row(t) })
}

// sentUpdate marks one delivery sent: sentArg.row's values.
const sentUpdate = `UPDATE herald_deliveries SET status = ?, provider = ?, provider_message_id = ?, sent_at = ?,
	last_error = '', lease_owner = '', lease_until = 0, updated_at = ? WHERE id = ?`

// row is sentUpdate's values at time t.
func (a sentArg) row(t int64) []any {
	return []any{string(notify.StatusSent), a.r.Provider, a.r.ProviderMessageID, a.at.UnixMicro(), t, a.id}
}

const (
	sandboxInsert = `INSERT INTO herald_sandbox_sends (delivery_id, message_id, channel, address, subject, body, accepted_at) VALUES `
	inboxInsert   = `INSERT INTO herald_inbox (recipient_id, delivery_id, event_type, title, body, created_at) `
)

// sandboxBatch records sandbox sends: one prepared INSERT per row on SQLite
// (PostgreSQL: sandboxPG; MySQL: sandboxMySQL, one multi-row INSERT each).
func (db *DB) sandboxBatch(ctx context.Context, tx *sql.Tx, rs []*groupReq) error {
	err := db.execEach(ctx, tx, sandboxInsert+`(?,?,?,?,?,?,?)`, len(rs), func(i int) []any {
		return rs[i].arg.(SandboxSend).row()
	})
	if err != nil {
		return fmt.Errorf("recording %d sandbox sends: %w", len(rs), err)
	}
	return nil
}

// row is a send's values in sandboxInsert's order.
func (a SandboxSend) row() []any {
	return []any{a.DeliveryID, a.MessageID, a.Channel, a.Address, a.Subject, a.Body, a.AcceptedAt.UnixMicro()}
}

type inboxArg struct {
	recipientID, deliveryID, eventType, title, body string
}

// inboxBatch adds inbox messages with a prepared INSERT … RETURNING per row on SQLite
// (a delivery already there is kept) and returns their ids, read afterwards for the
// ones it did not insert (already there: rare). PostgreSQL: inboxPG, MySQL: inboxMySQL.
func (db *DB) inboxBatch(ctx context.Context, tx *sql.Tx, rs []*groupReq) error {
	ids := make([]any, 0, len(rs))
	t := now()
	for _, r := range rs {
		ids = append(ids, r.arg.(inboxArg).deliveryID)
	}
	found := map[string]int64{}
	scan := func(rows rowScanner) error {
		var id int64
		var d string
		err := rows.Scan(&id, &d)
		found[d] = id
		return err
	}
	err := db.queryEach(ctx, tx, inboxInsert+`VALUES (?,?,?,?,?,?)`+db.onConflictNothing("delivery_id")+` RETURNING id, delivery_id`,
		len(rs), func(i int) []any {
			a := rs[i].arg.(inboxArg)
			return []any{a.recipientID, a.deliveryID, a.eventType, a.title, a.body, t}
		}, scan)
	if err != nil {
		return fmt.Errorf("adding %d inbox messages: %w", len(rs), err)
	}
	if missing := notFound(ids, found); len(missing) > 0 {
		if err := db.eachRowIn(ctx, tx, `SELECT id, delivery_id FROM herald_inbox WHERE delivery_id `, missing, scan); err != nil {
			return fmt.Errorf("reading inbox message ids: %w", err)
		}
	}
	for _, r := range rs {
		id, ok := found[r.arg.(inboxArg).deliveryID]
		if !ok {
			return fmt.Errorf("inbox message of %s not found after insert", r.arg.(inboxArg).deliveryID)
		}
		r.out = id
	}
	return nil
}

// setInboxIDs sets each inbox request's out to its message's id in found (by
// delivery id), or its err when the message is not there: a group transaction's
// requests fail one by one.
func setInboxIDs(rs []*groupReq, found map[string]int64) {
	for _, r := range rs {
		d := r.arg.(inboxArg).deliveryID
		id, ok := found[d]
		if !ok {
			r.err = fmt.Errorf("inbox message of %s not found after insert", d)
			continue
		}
		r.out = id
	}
}

// fanOutRows gathers the notifications, deliveries, messages and inbox deliveries of
// fan-out requests; topics in the order of their first message, so that a topic keeps
// the order in which the events were handed out.
func fanOutRows(rs []*groupReq) (ns []NotificationRecord, ds []notify.Delivery, topics []string, byTopic map[string][]*message.Message, ibs []InboxDelivery) {
	// The rows' slices are sized first: a delivery is a large struct, and a group
	// holds up to groupMax fan-outs, so growing them by appending copied each several
	// times.
	var nd, ni int
	for _, r := range rs {
		f := r.arg.(FanOut)
		nd, ni = nd+len(f.Deliveries), ni+len(f.Inbox)
	}
	ns = make([]NotificationRecord, 0, len(rs))
	ds, ibs = make([]notify.Delivery, 0, nd), make([]InboxDelivery, 0, ni)
	byTopic = map[string][]*message.Message{}
	for _, r := range rs {
		f := r.arg.(FanOut)
		if f.Notification.ID != "" { // a fallback adds a delivery to a recorded notification
			ns = append(ns, NotificationRecord{Notification: f.Notification, Deliveries: len(f.Deliveries) + len(f.Inbox)})
		}
		ds = append(ds, f.Deliveries...)
		ibs = append(ibs, f.Inbox...)
		for topic, ms := range f.Messages {
			if _, ok := byTopic[topic]; !ok {
				topics = append(topics, topic)
			}
			byTopic[topic] = append(byTopic[topic], ms...)
		}
	}
	return ns, ds, topics, byTopic, ibs
}

// withInbox returns ds followed by the deliveries of ibs.
func withInbox(ds []notify.Delivery, ibs []InboxDelivery) []notify.Delivery {
	if len(ibs) == 0 {
		return ds
	}
	all := make([]notify.Delivery, 0, len(ds)+len(ibs))
	all = append(all, ds...)
	for _, ib := range ibs {
		all = append(all, ib.Delivery)
	}
	return all
}

// fanOutBatch records the notifications and deliveries of many events in one INSERT
// each and publishes their messages with one INSERT per topic, in request order (so
// a topic keeps the order in which the events were handed out). PostgreSQL: fanOutPG,
// MySQL: fanOutMySQL.
func (db *DB) fanOutBatch(ctx context.Context, tx *sql.Tx, rs []*groupReq) error {
	ns, ds, topics, byTopic, ibs := fanOutRows(rs)
	if err := db.Notifications().Record(ctx, tx, ns); err != nil {
		return err
	}
	recorded, err := db.Deliveries().recorded(ctx, tx, withInbox(ds, ibs))
	if err != nil {
		return err
	}
	if err := db.writeInbox(ctx, tx, recorded.keepInbox(ibs)); err != nil {
		return err
	}
	ds = recorded.keep(ds)
	// Bound the parameters of one statement (12 per delivery) where the rows share one.
	for i := 0; i < len(ds); i += 1000 {
		if err := db.Deliveries().InsertQueued(ctx, tx, ds[i:min(i+1000, len(ds))]); err != nil {
			return err
		}
	}
	if len(topics) == 0 {
		return nil
	}
	pub, err := db.NewTxPublisher(wsql.TxFromStdSQL(tx), nil)
	if err != nil {
		return err
	}
	for _, topic := range topics {
		ms := byTopic[topic]
		for _, m := range ms {
			m.SetContext(ctx)
		}
		for i := 0; i < len(ms); i += 1000 {
			if err := pub.Publish(topic, ms[i:min(i+1000, len(ms))]...); err != nil {
				return fmt.Errorf("publishing to %s: %w", topic, err)
			}
		}
	}
	return nil
}
