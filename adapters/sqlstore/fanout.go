package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/notify"
)

// FanOut is what one event's fan-out commits: its notification record, the deliveries
// queued for their channel handlers with their messages, and the in-app deliveries
// written straight to the inbox.
type FanOut struct {
	// Notification is recorded unless its ID is empty (a fallback adds a delivery to a
	// recorded notification).
	Notification Notification
	// Deliveries are recorded queued; their messages, by topic, are published.
	Deliveries []notify.Delivery
	Messages   map[string][]*message.Message
	// Inbox holds in-app deliveries written to the recipient's inbox in the fan-out's
	// transaction and recorded sent (provider "inbox", provider message id the inbox
	// message's id), without a message on the in-app topic: see InboxDelivery.
	Inbox []InboxDelivery
}

// InboxDelivery is an in-app delivery the fan-out writes to the inbox itself. The inbox
// is a table of Herald's database, so the write needs no provider call, lease or retry:
// it commits with the fan-out or not at all (ADR 0013). Its address is the recipient id
// whose inbox gets the message.
type InboxDelivery struct {
	notify.Delivery
	Title, Body string
}

// CommitFanOut records an event's notification (unless f.Notification has no id) and
// deliveries, publishes the delivery messages to their topics and writes the inbox
// deliveries, all in one transaction: either the fan-out happened completely or not at
// all. Running it again for the same event changes nothing already recorded
// (deliveries keep their status, an inbox message is not added twice) and republishes
// the messages, which the delivery handlers absorb by delivery id.
func (db *DB) CommitFanOut(ctx context.Context, f FanOut) error {
	return db.submit(ctx, &groupReq{kind: batchFanOut, arg: f})
}

// OutboxLag is the age of the oldest outbox row the consumer group has not consumed
// (0 when it is up to date).
func (db *DB) OutboxLag(ctx context.Context, group string) (time.Duration, error) {
	return db.TopicLag(ctx, EventsTopic, group)
}

// TopicLag is the age of the oldest row of topic the consumer group has not consumed
// (0 when it is up to date): the first row after the group's position, in the order
// the subscription reads them. It reads that one row through the topic's key, so a
// scrape costs the same with a backlog of millions (ADR 0014); the oldest by
// created_at could differ from it by the time two writers' commits overlap.
func (db *DB) TopicLag(ctx context.Context, topic, group string) (time.Duration, error) {
	events, offsets := TopicTable(topic), OffsetsTable(topic)
	var q string
	args := []any{group}
	switch db.Dialect {
	case Postgres:
		q = `SELECT COALESCE((SELECT EXTRACT(EPOCH FROM (LOCALTIMESTAMP - e.created_at)) * 1000000 FROM "` + events + `" e
			WHERE (e.transaction_id, e."offset") > (SELECT last_processed_transaction_id, offset_acked FROM (
				SELECT last_processed_transaction_id, offset_acked FROM "` + offsets + `" WHERE consumer_group = $1
				UNION ALL SELECT '0'::xid8, 0 LIMIT 1) o)
			ORDER BY e.transaction_id, e."offset" LIMIT 1), 0)::BIGINT`
	case MySQL:
		q = "SELECT COALESCE((SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) FROM `" + events + "`" +
			" WHERE `acked` = 0 ORDER BY `offset` LIMIT 1), 0)"
		args = nil // a queue has no consumer groups
	default:
		q = `SELECT COALESCE((SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER) - created_at FROM "` + events + `"
			WHERE "offset" > COALESCE((SELECT offset_acked FROM "` + offsets + `" WHERE consumer_group = ?), 0)
			ORDER BY "offset" LIMIT 1), 0)`
	}
	var us int64
	if err := db.R.QueryRowContext(ctx, q, args...).Scan(&us); err != nil {
		return 0, fmt.Errorf("measuring outbox lag: %w", err)
	}
	return time.Duration(max(us, 0)) * time.Microsecond, nil
}

// The inbox deliveries of a fan-out (FanOut.Inbox): the inbox messages first, then the
// deliveries recorded sent, their provider message id read from the inbox message just
// written (a probe of its unique delivery index). A delivery recorded under an earlier
// id (Deliveries.recorded) gets neither: PostgreSQL skips it in both statements, the
// other dialects before building them. An inbox message or a delivery already there is
// kept, so running a fan-out again adds nothing.
const (
	inboxDeliveryCols = `id, event_id, event_type, channel, lane, recipient_id, address, status, occurred_at, created_at,
		updated_at, fallback_of, sent_at, attempts, provider, provider_message_id`
	inboxFanOutPG = inboxInsert + `SELECT v.recipient_id, v.delivery_id, v.event_type, v.title, v.body, $7::bigint
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
			AS v(recipient_id, delivery_id, event_type, title, body, event_id)
		WHERE NOT EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.event_id = v.event_id AND d.channel = '` + string(notify.ChannelInApp) + `'
			AND d.address = v.recipient_id AND d.id <> v.delivery_id OFFSET 0)
		ON CONFLICT (delivery_id) DO NOTHING`
	inboxDeliveriesPG = `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, recipient_id, address,
		fallback_of, occurred_at, status, created_at, updated_at, sent_at, attempts, provider, provider_message_id)
		SELECT v.*, $10, $11::bigint, $11::bigint, $11::bigint, 1, $12,
			COALESCE((SELECT i.id::text FROM herald_inbox i WHERE i.delivery_id = v.id), '')
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])
			AS v(id, event_id, event_type, channel, lane, recipient_id, address, fallback_of, occurred_at)
		WHERE NOT EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.event_id = v.event_id AND d.channel = v.channel
			AND d.address = v.address AND d.id <> v.id OFFSET 0)
		ON CONFLICT (id) DO NOTHING`
)

// writeInbox adds the statements that write ibs through x (a transaction on SQLite, a
// group's statements on PostgreSQL and MySQL).
func (db *DB) writeInbox(ctx context.Context, x Execer, ibs []InboxDelivery) error {
	if len(ibs) == 0 {
		return nil
	}
	t := now()
	if db.Dialect == Postgres {
		var c [6][]string
		for _, ib := range ibs {
			c[0], c[1], c[2] = append(c[0], string(ib.Address)), append(c[1], ib.ID), append(c[2], ib.EventType)
			c[3], c[4], c[5] = append(c[3], ib.Title), append(c[4], ib.Body), append(c[5], ib.EventID)
		}
		if _, err := x.ExecContext(ctx, inboxFanOutPG, c[0], c[1], c[2], c[3], c[4], c[5], t); err != nil {
			return fmt.Errorf("adding inbox messages: %w", err)
		}
		args := append(deliveryArgsPG(withInbox(nil, ibs), notify.StatusSent, t), notify.InboxProvider)
		if _, err := x.ExecContext(ctx, inboxDeliveriesPG, args...); err != nil {
			return fmt.Errorf("inserting inbox deliveries: %w", err)
		}
		return nil
	}
	inboxRow := func(ib InboxDelivery) []any {
		return []any{string(ib.Address), ib.ID, ib.EventType, ib.Title, ib.Body, t}
	}
	idText := "TEXT"
	if db.Dialect == MySQL {
		idText = "CHAR"
	}
	sentRow := `(?,?,?,?,?,?,?,?,?,?,?,?,?,1,?,COALESCE((SELECT CAST(i.id AS ` + idText +
		`) FROM herald_inbox i WHERE i.delivery_id = ?), ''))`
	sentArgs := func(ib InboxDelivery) []any {
		return append(deliveryRow(ib.Delivery, notify.StatusSent, t), t, notify.InboxProvider, ib.ID)
	}
	inboxQ := func(rows int) string {
		return inboxInsert + `VALUES ` + valueRows(rows, 6) + db.onConflictNothing("delivery_id")
	}
	sentQ := func(rows int) string {
		return `INSERT INTO herald_deliveries (` + inboxDeliveryCols + `) VALUES ` + repeatList(sentRow, rows) + db.onConflictNothing("id")
	}
	if tx, ok := x.(*sql.Tx); ok && db.Dialect == SQLite { // one prepared row at a time (batch.go)
		if err := db.execEach(ctx, tx, inboxQ(1), len(ibs), func(i int) []any { return inboxRow(ibs[i]) }); err != nil {
			return fmt.Errorf("adding inbox messages: %w", err)
		}
		if err := db.execEach(ctx, tx, sentQ(1), len(ibs), func(i int) []any { return sentArgs(ibs[i]) }); err != nil {
			return fmt.Errorf("inserting inbox deliveries: %w", err)
		}
		return nil
	}
	var ia, sa []any
	for _, ib := range ibs {
		ia, sa = append(ia, inboxRow(ib)...), append(sa, sentArgs(ib)...)
	}
	if _, err := x.ExecContext(ctx, inboxQ(len(ibs)), ia...); err != nil {
		return fmt.Errorf("adding inbox messages: %w", err)
	}
	if _, err := x.ExecContext(ctx, sentQ(len(ibs)), sa...); err != nil {
		return fmt.Errorf("inserting inbox deliveries: %w", err)
	}
	return nil
}
