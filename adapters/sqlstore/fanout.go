package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/notify"
)

// CommitFanOut records an event's notification and deliveries and publishes the
// delivery messages to their topics, all in one transaction: either the fan-out
// happened completely or not at all. Running it again for the same event changes
// nothing already recorded (deliveries keep their status) and republishes the messages,
// which the delivery handlers absorb by delivery id.
func (db *DB) CommitFanOut(ctx context.Context, n Notification, ds []notify.Delivery, msgs map[string][]*message.Message) error {
	return db.InTx(ctx, func(tx *sql.Tx) error {
		if err := db.Notifications().Record(ctx, tx, n, len(ds)); err != nil {
			return err
		}
		if err := db.Deliveries().InsertQueued(ctx, tx, ds); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: db.SchemaAdapter(0)}, nil)
		if err != nil {
			return err
		}
		for topic, ms := range msgs {
			for _, m := range ms {
				m.SetContext(ctx)
			}
			if err := pub.Publish(topic, ms...); err != nil {
				return fmt.Errorf("publishing to %s: %w", topic, err)
			}
		}
		return nil
	})
}

// OutboxLag is the age of the oldest outbox row the consumer group has not consumed
// (0 when it is up to date).
func (db *DB) OutboxLag(ctx context.Context, group string) (time.Duration, error) {
	var created int64
	err := db.R.QueryRowContext(ctx, `SELECT created_at FROM "`+TopicTable(EventsTopic)+`"
		WHERE "offset" > COALESCE((SELECT offset_acked FROM "`+OffsetsTable(EventsTopic)+`" WHERE consumer_group = ?), 0)
		ORDER BY "offset" LIMIT 1`, group).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("measuring outbox lag: %w", err)
	}
	lag := time.Since(fromMicros(created))
	if lag < 0 {
		lag = 0
	}
	return lag, nil
}
