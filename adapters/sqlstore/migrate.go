package sqlstore

import (
	"context"
	"fmt"
)

// Topics every Herald database has: the outbox (EventsTopic) and one topic per channel.
const (
	EventsTopic = "events"
)

// DeliveryTopic is the topic carrying messages of one channel.
func DeliveryTopic(channel string) string { return "deliveries." + channel }

// schemaSQLite creates Herald's stores. Times are microseconds since the Unix epoch.
var schemaSQLite = []string{
	`CREATE TABLE IF NOT EXISTS herald_recipients (
		id TEXT PRIMARY KEY,
		locale TEXT NOT NULL DEFAULT '',
		time_zone TEXT NOT NULL DEFAULT '',
		contacts TEXT NOT NULL DEFAULT '{}',
		preferences TEXT NOT NULL DEFAULT '{}',
		updated_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS herald_notifications (
		id TEXT PRIMARY KEY,
		type TEXT NOT NULL,
		customer_id TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL,
		reason TEXT NOT NULL DEFAULT '',
		deliveries INTEGER NOT NULL DEFAULT 0,
		occurred_at INTEGER NOT NULL,
		created_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS herald_deliveries (
		id TEXT PRIMARY KEY,
		event_id TEXT NOT NULL,
		event_type TEXT NOT NULL,
		channel TEXT NOT NULL,
		lane TEXT NOT NULL,
		recipient_id TEXT NOT NULL DEFAULT '',
		address TEXT NOT NULL,
		status TEXT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		provider TEXT NOT NULL DEFAULT '',
		provider_message_id TEXT NOT NULL DEFAULT '',
		occurred_at INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		sent_at INTEGER
	)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_event ON herald_deliveries (event_id)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_page ON herald_deliveries (created_at, id)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_status ON herald_deliveries (status, created_at, id)`,
	`CREATE TABLE IF NOT EXISTS herald_inbox (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		recipient_id TEXT NOT NULL,
		delivery_id TEXT NOT NULL UNIQUE,
		event_type TEXT NOT NULL DEFAULT '',
		title TEXT NOT NULL DEFAULT '',
		body TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		read_at INTEGER
	)`,
	`CREATE INDEX IF NOT EXISTS herald_inbox_recipient ON herald_inbox (recipient_id, id)`,
	`CREATE TABLE IF NOT EXISTS herald_poison (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		message_uuid TEXT NOT NULL,
		topic TEXT NOT NULL,
		handler TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL,
		payload BLOB NOT NULL,
		metadata TEXT NOT NULL DEFAULT '{}',
		created_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS herald_sandbox_sends (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		delivery_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		address TEXT NOT NULL,
		subject TEXT NOT NULL DEFAULT '',
		body TEXT NOT NULL DEFAULT '',
		accepted_at INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS herald_sandbox_sends_delivery ON herald_sandbox_sends (delivery_id)`,
	`CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
		idem_key TEXT PRIMARY KEY,
		notification_id TEXT NOT NULL,
		created_at INTEGER NOT NULL
	)`,
}

// schemaPostgres is schemaSQLite for PostgreSQL.
var schemaPostgres = []string{
	`CREATE TABLE IF NOT EXISTS herald_recipients (
		id TEXT PRIMARY KEY, locale TEXT NOT NULL DEFAULT '', time_zone TEXT NOT NULL DEFAULT '',
		contacts TEXT NOT NULL DEFAULT '{}', preferences TEXT NOT NULL DEFAULT '{}', updated_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS herald_notifications (
		id TEXT PRIMARY KEY, type TEXT NOT NULL, customer_id TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
		reason TEXT NOT NULL DEFAULT '', deliveries INTEGER NOT NULL DEFAULT 0, occurred_at BIGINT NOT NULL, created_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS herald_deliveries (
		id TEXT PRIMARY KEY, event_id TEXT NOT NULL, event_type TEXT NOT NULL, channel TEXT NOT NULL, lane TEXT NOT NULL,
		recipient_id TEXT NOT NULL DEFAULT '', address TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '', provider TEXT NOT NULL DEFAULT '', provider_message_id TEXT NOT NULL DEFAULT '',
		occurred_at BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, sent_at BIGINT)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_event ON herald_deliveries (event_id text_pattern_ops)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_page ON herald_deliveries (created_at, id)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_status ON herald_deliveries (status, created_at, id)`,
	`CREATE TABLE IF NOT EXISTS herald_inbox (
		id BIGSERIAL PRIMARY KEY, recipient_id TEXT NOT NULL, delivery_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL DEFAULT '',
		title TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, read_at BIGINT)`,
	`CREATE INDEX IF NOT EXISTS herald_inbox_recipient ON herald_inbox (recipient_id, id)`,
	`CREATE TABLE IF NOT EXISTS herald_poison (
		id BIGSERIAL PRIMARY KEY, message_uuid TEXT NOT NULL, topic TEXT NOT NULL, handler TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL, payload BYTEA NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', created_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS herald_sandbox_sends (
		id BIGSERIAL PRIMARY KEY, delivery_id TEXT NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL,
		subject TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '', accepted_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS herald_sandbox_sends_delivery ON herald_sandbox_sends (delivery_id)`,
	`CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
		idem_key TEXT PRIMARY KEY, notification_id TEXT NOT NULL, created_at BIGINT NOT NULL)`,
}

// schemaMySQL is schemaSQLite for MySQL and MariaDB (InnoDB, utf8mb4; indexes inline
// because MySQL has no CREATE INDEX IF NOT EXISTS).
var schemaMySQL = []string{
	`CREATE TABLE IF NOT EXISTS herald_recipients (
		id VARCHAR(255) PRIMARY KEY, locale VARCHAR(16) NOT NULL DEFAULT '', time_zone VARCHAR(64) NOT NULL DEFAULT '',
		contacts TEXT NOT NULL DEFAULT ('{}'), preferences TEXT NOT NULL DEFAULT ('{}'), updated_at BIGINT NOT NULL) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_notifications (
		id VARCHAR(255) PRIMARY KEY, type VARCHAR(128) NOT NULL, customer_id VARCHAR(255) NOT NULL DEFAULT '',
		status VARCHAR(32) NOT NULL, reason TEXT NOT NULL DEFAULT (''), deliveries INT NOT NULL DEFAULT 0,
		occurred_at BIGINT NOT NULL, created_at BIGINT NOT NULL) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_deliveries (
		id VARCHAR(64) PRIMARY KEY, event_id VARCHAR(255) NOT NULL, event_type VARCHAR(128) NOT NULL, channel VARCHAR(16) NOT NULL,
		lane VARCHAR(16) NOT NULL, recipient_id VARCHAR(255) NOT NULL DEFAULT '', address VARCHAR(1024) NOT NULL,
		status VARCHAR(16) NOT NULL, attempts INT NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT (''),
		provider VARCHAR(64) NOT NULL DEFAULT '', provider_message_id VARCHAR(255) NOT NULL DEFAULT '',
		occurred_at BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, sent_at BIGINT NULL,
		INDEX herald_deliveries_event (event_id), INDEX herald_deliveries_page (created_at, id),
		INDEX herald_deliveries_status (status, created_at, id)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_inbox (
		id BIGINT AUTO_INCREMENT PRIMARY KEY, recipient_id VARCHAR(255) NOT NULL, delivery_id VARCHAR(64) NOT NULL UNIQUE,
		event_type VARCHAR(128) NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT (''), body TEXT NOT NULL DEFAULT (''), created_at BIGINT NOT NULL,
		read_at BIGINT NULL, INDEX herald_inbox_recipient (recipient_id, id)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_poison (
		id BIGINT AUTO_INCREMENT PRIMARY KEY, message_uuid VARCHAR(255) NOT NULL, topic VARCHAR(255) NOT NULL,
		handler VARCHAR(255) NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT (''), payload LONGBLOB NOT NULL, metadata TEXT NOT NULL DEFAULT ('{}'),
		created_at BIGINT NOT NULL, INDEX herald_poison_uuid (message_uuid)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_sandbox_sends (
		id BIGINT AUTO_INCREMENT PRIMARY KEY, delivery_id VARCHAR(64) NOT NULL, channel VARCHAR(16) NOT NULL,
		address VARCHAR(1024) NOT NULL, subject TEXT NOT NULL DEFAULT (''), body TEXT NOT NULL DEFAULT (''), accepted_at BIGINT NOT NULL,
		INDEX herald_sandbox_sends_delivery (delivery_id)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
		idem_key VARCHAR(512) PRIMARY KEY, notification_id VARCHAR(255) NOT NULL, created_at BIGINT NOT NULL) CHARACTER SET utf8mb4`,
}

// Migrate creates every table Herald uses, idempotently: the stores, the outbox topic
// and the channel topics.
func (db *DB) Migrate(ctx context.Context, channels []string) error {
	schema := map[Dialect][]string{SQLite: schemaSQLite, Postgres: schemaPostgres, MySQL: schemaMySQL}[db.Dialect]
	for _, q := range schema {
		if _, err := db.W.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("migrating %s: %w", db.Location, err)
		}
	}
	topics := []string{EventsTopic}
	for _, ch := range channels {
		topics = append(topics, DeliveryTopic(ch))
	}
	for _, t := range topics {
		if err := db.InitTopic(t); err != nil {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	// GET /v1/notifications/{id} looks events up by id while they wait in the outbox.
	return db.indexOutbox(ctx)
}

func (db *DB) indexOutbox(ctx context.Context) error {
	if db.Dialect == MySQL {
		var n int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE()
			AND table_name = ? AND index_name = 'herald_events_uuid'`, TopicTable(EventsTopic)).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := db.W.ExecContext(ctx, "CREATE INDEX herald_events_uuid ON `"+TopicTable(EventsTopic)+"` (uuid)")
		return err
	}
	if _, err := db.W.ExecContext(ctx, db.q(`CREATE INDEX IF NOT EXISTS herald_events_uuid ON "`+TopicTable(EventsTopic)+`" (uuid)`)); err != nil {
		return fmt.Errorf("indexing the outbox: %w", err)
	}
	return nil
}
