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
		key TEXT PRIMARY KEY,
		notification_id TEXT NOT NULL,
		created_at INTEGER NOT NULL
	)`,
}

// Migrate creates every table Herald uses, idempotently: the stores, the outbox topic
// and the channel topics.
func (db *DB) Migrate(ctx context.Context, channels []string) error {
	for _, q := range schemaSQLite {
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
	if _, err := db.W.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS herald_events_uuid ON "`+TopicTable(EventsTopic)+`" (uuid)`); err != nil {
		return fmt.Errorf("indexing the outbox: %w", err)
	}
	return nil
}
