package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/notify"
)

// Topics every Herald database has: the outbox (EventsTopic) and one topic per channel.
const (
	EventsTopic = "events"
	// CriticalEventsTopic is the outbox of the critical lane (one-time passwords,
	// security and fraud alerts): its own table, consumed by its own handler, so a
	// backlog in EventsTopic never delays it.
	CriticalEventsTopic = "events.critical"
)

// IsOutboxTopic reports whether topic is an outbox (JSON payload written by cores).
func IsOutboxTopic(topic string) bool { return topic == EventsTopic || topic == CriticalEventsTopic }

// EventsTopicFor is the outbox topic of a lane.
func EventsTopicFor(l notify.Lane) string {
	if l == notify.LaneCritical {
		return CriticalEventsTopic
	}
	return EventsTopic
}

// DeliveryTopic is the topic carrying messages of one channel in one lane.
func DeliveryTopic(channel string, l notify.Lane) string {
	if l == notify.LaneCritical {
		return "deliveries." + channel + ".critical"
	}
	return "deliveries." + channel
}

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
		sent_at INTEGER,
		lease_owner TEXT NOT NULL DEFAULT '',
		lease_until INTEGER NOT NULL DEFAULT 0,
		fallback_of TEXT NOT NULL DEFAULT '',
		problem TEXT NOT NULL DEFAULT ''
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
		message_id TEXT NOT NULL DEFAULT '',
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
	`CREATE TABLE IF NOT EXISTS herald_delayed (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		topic TEXT NOT NULL,
		uuid TEXT NOT NULL,
		payload BLOB NOT NULL,
		metadata TEXT NOT NULL DEFAULT '{}',
		due_at INTEGER NOT NULL,
		created_at INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS herald_delayed_due ON herald_delayed (due_at)`,
	`CREATE TABLE IF NOT EXISTS herald_recipient_windows (
		addr_key TEXT NOT NULL,
		window_start INTEGER NOT NULL,
		sends INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (addr_key, window_start)
	)`,
	// The delivery of each message a provider may report on by its own id alone
	// (notify.Receipt.Reports): the latest send of a reused id wins.
	`CREATE TABLE IF NOT EXISTS herald_message_ids (
		provider TEXT NOT NULL,
		message_id TEXT NOT NULL,
		delivery_id TEXT NOT NULL,
		PRIMARY KEY (provider, message_id)
	)`,
	`CREATE INDEX IF NOT EXISTS herald_message_ids_delivery ON herald_message_ids (delivery_id)`,
	// Reports that came before their send was recorded, by the provider's message id or
	// by "ref:" and the delivery id (RecordReport).
	`CREATE TABLE IF NOT EXISTS herald_early_reports (
		provider TEXT NOT NULL,
		message_id TEXT NOT NULL,
		delivered INTEGER NOT NULL,
		reason TEXT NOT NULL DEFAULT '',
		received_at INTEGER NOT NULL,
		PRIMARY KEY (provider, message_id)
	)`,
	`CREATE INDEX IF NOT EXISTS herald_early_reports_received ON herald_early_reports (received_at)`,
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
		occurred_at BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, sent_at BIGINT,
		lease_owner TEXT NOT NULL DEFAULT '', lease_until BIGINT NOT NULL DEFAULT 0, fallback_of TEXT NOT NULL DEFAULT '',
		problem TEXT NOT NULL DEFAULT '') WITH (fillfactor = ` + deliveriesFillfactor + `)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_event ON herald_deliveries (event_id text_pattern_ops)`,
	`CREATE INDEX IF NOT EXISTS herald_deliveries_page ON herald_deliveries (created_at, id)`,
	// No index of status: see deliveriesHOT. The problem index is made by Migrate, after
	// the column is added to databases made before it.
	`CREATE TABLE IF NOT EXISTS herald_inbox (
		id BIGSERIAL PRIMARY KEY, recipient_id TEXT NOT NULL, delivery_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL DEFAULT '',
		title TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, read_at BIGINT)`,
	`CREATE INDEX IF NOT EXISTS herald_inbox_recipient ON herald_inbox (recipient_id, id)`,
	`CREATE TABLE IF NOT EXISTS herald_poison (
		id BIGSERIAL PRIMARY KEY, message_uuid TEXT NOT NULL, topic TEXT NOT NULL, handler TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL, payload BYTEA NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', created_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS herald_sandbox_sends (
		id BIGSERIAL PRIMARY KEY, delivery_id TEXT NOT NULL, message_id TEXT NOT NULL DEFAULT '', channel TEXT NOT NULL,
		address TEXT NOT NULL, subject TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '', accepted_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS herald_sandbox_sends_delivery ON herald_sandbox_sends (delivery_id)`,
	`CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
		idem_key TEXT PRIMARY KEY, notification_id TEXT NOT NULL, created_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS herald_delayed (
		id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, uuid TEXT NOT NULL, payload BYTEA NOT NULL,
		metadata TEXT NOT NULL DEFAULT '{}', due_at BIGINT NOT NULL, created_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS herald_delayed_due ON herald_delayed (due_at)`,
	`CREATE TABLE IF NOT EXISTS herald_recipient_windows (
		addr_key TEXT NOT NULL, window_start BIGINT NOT NULL, sends INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (addr_key, window_start))`,
	`CREATE TABLE IF NOT EXISTS herald_message_ids (
		provider TEXT NOT NULL, message_id TEXT NOT NULL, delivery_id TEXT NOT NULL, PRIMARY KEY (provider, message_id))`,
	`CREATE INDEX IF NOT EXISTS herald_message_ids_delivery ON herald_message_ids (delivery_id)`,
	`CREATE TABLE IF NOT EXISTS herald_early_reports (
		provider TEXT NOT NULL, message_id TEXT NOT NULL, delivered INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',
		received_at BIGINT NOT NULL, PRIMARY KEY (provider, message_id))`,
	`CREATE INDEX IF NOT EXISTS herald_early_reports_received ON herald_early_reports (received_at)`,
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
		lease_owner VARCHAR(64) NOT NULL DEFAULT '', lease_until BIGINT NOT NULL DEFAULT 0, fallback_of VARCHAR(64) NOT NULL DEFAULT '',
		problem VARCHAR(16) NOT NULL DEFAULT '', INDEX herald_deliveries_event (event_id), INDEX herald_deliveries_page (created_at, id),
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
		id BIGINT AUTO_INCREMENT PRIMARY KEY, delivery_id VARCHAR(64) NOT NULL, message_id VARCHAR(64) NOT NULL DEFAULT '', channel VARCHAR(16) NOT NULL,
		address VARCHAR(1024) NOT NULL, subject TEXT NOT NULL DEFAULT (''), body TEXT NOT NULL DEFAULT (''), accepted_at BIGINT NOT NULL,
		INDEX herald_sandbox_sends_delivery (delivery_id)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
		idem_key VARCHAR(512) PRIMARY KEY, notification_id VARCHAR(255) NOT NULL, created_at BIGINT NOT NULL) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_delayed (
		id BIGINT AUTO_INCREMENT PRIMARY KEY, topic VARCHAR(255) NOT NULL, uuid VARCHAR(255) NOT NULL, payload LONGBLOB NOT NULL,
		metadata TEXT NOT NULL DEFAULT ('{}'), due_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
		INDEX herald_delayed_due (due_at)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_recipient_windows (
		addr_key VARCHAR(64) NOT NULL, window_start BIGINT NOT NULL, sends INT NOT NULL DEFAULT 0,
		PRIMARY KEY (addr_key, window_start)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_message_ids (
		provider VARCHAR(64) NOT NULL, message_id VARCHAR(255) NOT NULL, delivery_id VARCHAR(64) NOT NULL,
		PRIMARY KEY (provider, message_id), INDEX herald_message_ids_delivery (delivery_id)) CHARACTER SET utf8mb4`,
	`CREATE TABLE IF NOT EXISTS herald_early_reports (
		provider VARCHAR(64) NOT NULL, message_id VARCHAR(255) NOT NULL, delivered INT NOT NULL, reason TEXT NOT NULL DEFAULT (''),
		received_at BIGINT NOT NULL, PRIMARY KEY (provider, message_id), INDEX herald_early_reports_received (received_at)) CHARACTER SET utf8mb4`,
	// Subscription leases where the server refuses named locks (Galera; table_lease.go).
	`CREATE TABLE IF NOT EXISTS herald_leases (
		name VARCHAR(64) PRIMARY KEY, owner VARCHAR(64) NOT NULL, expires_at BIGINT NOT NULL) CHARACTER SET utf8mb4`,
}

// addedColumns are columns added to tables after their first release; Migrate adds them
// to databases created before.
var addedColumns = []struct {
	table, column, sqlite, postgres, mysql string
	fill                                   string // an UPDATE that gives the rows already there their value
}{
	{"herald_deliveries", "lease_owner", "TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''", "VARCHAR(64) NOT NULL DEFAULT ''", ""},
	{"herald_deliveries", "lease_until", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0", ""},
	{"herald_deliveries", "fallback_of", "TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''", "VARCHAR(64) NOT NULL DEFAULT ''", ""},
	{"herald_sandbox_sends", "message_id", "TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''", "VARCHAR(64) NOT NULL DEFAULT ''", ""},
	{"herald_deliveries", "problem", "TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''", "VARCHAR(16) NOT NULL DEFAULT ''",
		`UPDATE herald_deliveries SET problem = status WHERE status IN (` + problemStatusList + `)`},
}

func (db *DB) addColumns(ctx context.Context) error {
	for _, c := range addedColumns {
		if db.has(ctx, c.table, c.column) {
			continue
		}
		def := map[Dialect]string{SQLite: c.sqlite, Postgres: c.postgres, MySQL: c.mysql}[db.Dialect]
		if _, err := db.W.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.column+" "+def); err != nil {
			return fmt.Errorf("adding %s.%s: %w", c.table, c.column, err)
		}
		if c.fill == "" {
			continue
		}
		if _, err := db.W.ExecContext(ctx, c.fill); err != nil {
			return fmt.Errorf("filling %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}

// deliveriesFillfactor leaves room on each page of herald_deliveries on PostgreSQL for
// the row versions its updates write (deliveriesHOT): half the page, one new version
// for every row. At 70, a value kept until session 23, 77-83% of the updates in a
// catch-up were HOT; the others found their page full and wrote the new version on
// another page, with an entry in each of the three indexes and a lock record in the
// WAL. At 50: 93-97%, 5.8% fewer WAL records per event, the table's heap 15% larger
// and its indexes smaller (docs/performance.md, Optimisations, session 23).
const deliveriesFillfactor = "50"

// earlierFillfactor is the value Herald set before deliveriesFillfactor: a table made
// with it is given the current one. Any other value was an operator's and is kept.
const earlierFillfactor = "70"

// deliveriesHOT readies herald_deliveries on PostgreSQL for heap-only updates. A delivery
// row is updated twice on its way (the claim, then the provider's acceptance), and
// PostgreSQL can write the new row version beside the old one without an entry in
// every index (a HOT update) only when the update changes no indexed column and the
// page has room. So no index holds a column the claim or the sent update writes:
// status has no index of its own, and the statuses an operator looks for (failed,
// expired, poisoned, undelivered) are listed through problem, which the hot path never
// writes (ADR 0015). The price: listing the in-flight statuses walks the deliveries in
// creation order (Deliveries.List bounds the walk). Databases made before lose the
// status index here.
func (db *DB) deliveriesHOT(ctx context.Context) error {
	if db.Dialect != Postgres {
		return nil
	}
	// Partial: the deliveries that ended well, nearly all, cost the index nothing.
	if _, err := db.W.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS herald_deliveries_problem
		ON herald_deliveries (problem, created_at, id) WHERE problem <> ''`); err != nil {
		return fmt.Errorf("indexing herald_deliveries' problems: %w", err)
	}
	if _, err := db.W.ExecContext(ctx, `DROP INDEX IF EXISTS herald_deliveries_status`); err != nil {
		return fmt.Errorf("dropping the status index: %w", err)
	}
	var opts sql.NullString
	if err := db.R.QueryRowContext(ctx, `SELECT array_to_string(reloptions, ',') FROM pg_class
		WHERE oid = to_regclass('herald_deliveries')`).Scan(&opts); err != nil {
		return fmt.Errorf("reading herald_deliveries' storage options: %w", err)
	}
	for _, o := range strings.Split(opts.String, ",") {
		if v, ok := strings.CutPrefix(o, "fillfactor="); ok && v != earlierFillfactor {
			return nil // Herald's, or an operator's
		}
	}
	// New pages keep the room; pages written before fill as they are updated.
	if _, err := db.W.ExecContext(ctx, `ALTER TABLE herald_deliveries SET (fillfactor = `+deliveriesFillfactor+`)`); err != nil {
		return fmt.Errorf("setting herald_deliveries' fillfactor: %w", err)
	}
	return nil
}

// Migrate creates every table Herald uses, idempotently: the stores, the outbox topic
// and the channel topics.
func (db *DB) Migrate(ctx context.Context, channels []string) error {
	schema := map[Dialect][]string{SQLite: schemaSQLite, Postgres: schemaPostgres, MySQL: schemaMySQL}[db.Dialect]
	upgrading := db.has(ctx, "herald_deliveries", "*") && !db.has(ctx, "herald_message_ids", "*")
	for _, q := range schema {
		if _, err := db.W.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("migrating %s: %w", db.Location, err)
		}
	}
	if err := db.addColumns(ctx); err != nil {
		return fmt.Errorf("migrating %s: %w", db.Location, err)
	}
	if err := db.deliveriesHOT(ctx); err != nil {
		return fmt.Errorf("migrating %s: %w", db.Location, err)
	}
	if upgrading {
		// Deliveries sent by an earlier version may still be reported on: the ids of
		// the last week's that have no report yet. Which providers report is not
		// recorded, so every provider's are kept.
		if _, err := db.W.ExecContext(ctx, db.q(`INSERT INTO herald_message_ids (provider, message_id, delivery_id)
			SELECT provider, provider_message_id, MAX(id) FROM herald_deliveries
			WHERE status = ? AND provider_message_id <> '' AND sent_at > ? GROUP BY provider, provider_message_id`),
			string(notify.StatusSent), now()-(7*24*time.Hour).Microseconds()); err != nil {
			return fmt.Errorf("migrating %s: keeping the provider message ids: %w", db.Location, err)
		}
	}
	topics := []string{EventsTopic, CriticalEventsTopic}
	for _, ch := range channels {
		topics = append(topics, DeliveryTopic(ch, notify.LaneNormal), DeliveryTopic(ch, notify.LaneCritical))
	}
	for _, t := range topics {
		if err := db.InitTopic(t); err != nil {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	// GET /v1/notifications/{id} looks events up by id while they wait in the outbox.
	for _, t := range []string{EventsTopic, CriticalEventsTopic} {
		if err := db.ensureIndex(ctx, TopicTable(t), TopicTable(t)+"_uuid", "uuid"); err != nil {
			return err
		}
	}
	// Records are pruned by age (PruneRecords).
	if err := db.ensureIndex(ctx, "herald_notifications", "herald_notifications_created", "created_at"); err != nil {
		return err
	}
	return db.ensureIndex(ctx, "herald_idempotency_keys", "herald_idempotency_keys_created", "created_at")
}

// has reports whether table exists with column ("*": any): a SELECT of it fails
// exactly when either is missing.
func (db *DB) has(ctx context.Context, table, column string) bool {
	var n int
	return db.W.QueryRowContext(ctx, "SELECT COUNT("+column+") FROM "+table+" WHERE 1 = 0").Scan(&n) == nil
}

// ensureIndex creates an index of table on column unless it exists.
func (db *DB) ensureIndex(ctx context.Context, table, index, column string) error {
	if db.Dialect == MySQL {
		var n int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE()
			AND table_name = ? AND index_name = ?`, table, index).Scan(&n); err != nil || n > 0 {
			return err
		}
		if _, err := db.W.ExecContext(ctx, "CREATE INDEX "+index+" ON `"+table+"` ("+column+")"); err != nil {
			return fmt.Errorf("indexing %s: %w", table, err)
		}
		return nil
	}
	if _, err := db.W.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+index+` ON "`+table+`" (`+column+`)`); err != nil {
		return fmt.Errorf("indexing %s: %w", table, err)
	}
	return nil
}
