package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/notify"
)

// CommitFanOut records an event's notification (unless n has no id) and deliveries and publishes the
// delivery messages to their topics, all in one transaction: either the fan-out
// happened completely or not at all. Running it again for the same event changes
// nothing already recorded (deliveries keep their status) and republishes the messages,
// which the delivery handlers absorb by delivery id.
func (db *DB) CommitFanOut(ctx context.Context, n Notification, ds []notify.Delivery, msgs map[string][]*message.Message) error {
	return db.submit(ctx, &groupReq{kind: batchFanOut, arg: fanOutArg{n: n, ds: ds, msgs: msgs}})
}

// OutboxLag is the age of the oldest outbox row the consumer group has not consumed
// (0 when it is up to date).
func (db *DB) OutboxLag(ctx context.Context, group string) (time.Duration, error) {
	return db.TopicLag(ctx, EventsTopic, group)
}

// TopicLag is the age of the oldest row of topic the consumer group has not consumed
// (0 when it is up to date).
func (db *DB) TopicLag(ctx context.Context, topic, group string) (time.Duration, error) {
	events, offsets := TopicTable(topic), OffsetsTable(topic)
	var q string
	args := []any{group}
	switch db.Dialect {
	case Postgres:
		q = `SELECT COALESCE(EXTRACT(EPOCH FROM (LOCALTIMESTAMP - MIN(e.created_at))) * 1000000, 0)::BIGINT
			FROM "` + events + `" e, (
				SELECT offset_acked, last_processed_transaction_id FROM "` + offsets + `" WHERE consumer_group = $1
				UNION ALL SELECT 0, '0'::xid8 LIMIT 1) o
			WHERE (e.transaction_id = o.last_processed_transaction_id AND e."offset" > o.offset_acked)
				OR e.transaction_id > o.last_processed_transaction_id`
	case MySQL:
		q = "SELECT COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(6)), 0) FROM `" + events + "`" +
			" WHERE `acked` = 0"
		args = nil // a queue has no consumer groups
	default:
		q = `SELECT COALESCE(CAST(unixepoch('subsec') * 1000000 AS INTEGER) - MIN(created_at), 0) FROM "` + events + `"
			WHERE "offset" > COALESCE((SELECT offset_acked FROM "` + offsets + `" WHERE consumer_group = ?), 0)`
	}
	var us int64
	if err := db.R.QueryRowContext(ctx, q, args...).Scan(&us); err != nil {
		return 0, fmt.Errorf("measuring outbox lag: %w", err)
	}
	return time.Duration(max(us, 0)) * time.Microsecond, nil
}
