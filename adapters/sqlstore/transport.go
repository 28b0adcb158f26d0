package sqlstore

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/internal/jsonx"
)

// TransportConfig configures SQL topics.
type TransportConfig struct {
	// ConsumerGroup of subscribers. Default "herald".
	ConsumerGroup string
	// PollInterval is how long an idle subscriber waits before asking again. Default 10ms.
	PollInterval time.Duration
	// BatchSize is how many rows one subscriber query reads. Default 100.
	BatchSize int
	// AckDeadline: a message not acked in this time is redelivered. Default 60s.
	AckDeadline time.Duration
	// Concurrency is how many messages of a batch are handed out before the first is
	// acked. Default 1: one at a time, the next after the previous one's ack.
	Concurrency int
	// Key, when set, names a message's ordering key: messages with the same key are
	// handed out one at a time, in topic order. "" means no constraint.
	Key func(topic string, m *message.Message) string
	// ResendInterval is the wait before a nacked message is handed out again.
	// Default 10ms.
	ResendInterval time.Duration
	// RetryInterval is the wait after a failed read. Default 1s.
	RetryInterval time.Duration
	// IdlePollMax: an idle subscription of a topic that only Herald writes (all but
	// the outboxes) doubles its poll interval up to this, since this process's
	// commits wake it (wake.go); polls still find what other instances publish.
	// Default 200ms; PollInterval or less turns the backoff off.
	IdlePollMax time.Duration
}

func (c *TransportConfig) setDefaults() {
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = "herald"
	}
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = 60 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.ResendInterval == 0 {
		c.ResendInterval = 10 * time.Millisecond
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = time.Second
	}
	if c.IdlePollMax == 0 {
		c.IdlePollMax = 200 * time.Millisecond
	}
}

// SchemaAdapter returns the watermill-sql schema adapter of the database: Herald's
// own on SQLite and MySQL (a queue), watermill-sql's log schema (with offsets per
// consumer group) on PostgreSQL; docs/adr/0003-sql-schemas.md says why.
func (db *DB) SchemaAdapter(batch int) wsql.SchemaAdapter { return SchemaAdapterFor(db.Dialect, batch) }

// SchemaAdapterFor returns the watermill-sql schema adapter of a dialect.
func SchemaAdapterFor(d Dialect, batch int) wsql.SchemaAdapter {
	switch d {
	case Postgres:
		return PostgresSchema{wsql.DefaultPostgreSQLSchema{
			GenerateMessagesTableName: func(t string) string { return `"` + TopicTable(t) + `"` },
			GeneratePayloadType:       payloadType("JSON", "BYTEA"),
			SubscribeBatchSize:        batch,
		}}
	case MySQL:
		return MySQLQueueSchema{SubscribeBatchSize: batch}
	}
	return SQLiteSchema{SubscribeBatchSize: batch}
}

// OffsetsAdapter returns the watermill-sql offsets adapter of the database.
func (db *DB) OffsetsAdapter() wsql.OffsetsAdapter {
	switch db.Dialect {
	case Postgres:
		return wsql.DefaultPostgreSQLOffsetsAdapter{
			GenerateMessagesOffsetsTableName: func(t string) string { return `"` + OffsetsTable(t) + `"` },
		}
	case MySQL:
		return MySQLQueueAcks{}
	}
	return SQLiteOffsets{}
}

// payloadType: the outbox is JSON, so a core's plain INSERT is checked by the
// database and readable by people; Herald's internal topics carry opaque bytes.
func payloadType(outbox, internal string) func(string) string {
	return func(topic string) string {
		if IsOutboxTopic(topic) {
			return outbox
		}
		return internal
	}
}

func (db *DB) beginner() wsql.Beginner {
	if db.Dialect == SQLite {
		return SQLiteBeginner{R: db.R, W: db.W}
	}
	return wsql.BeginnerFromStdSQL(db.W)
}

// subBeginner is the subscribers' connection source.
func (db *DB) subBeginner() wsql.Beginner {
	if db.sub == nil {
		return db.beginner()
	}
	return wsql.BeginnerFromStdSQL(db.sub)
}

// PostgresSchema is watermill-sql's PostgreSQL log schema with a default for the
// transaction_id column, so that a core's plain INSERT needs no PostgreSQL function.
type PostgresSchema struct {
	wsql.DefaultPostgreSQLSchema
}

// SchemaInitializingQueries creates the topic table: watermill-sql's table with
// defaults for transaction_id and metadata, under an advisory lock.
func (s PostgresSchema) SchemaInitializingQueries(p wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return []wsql.Query{
		{Query: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", wsql.DefaultSchemaInitializationLock("herald"))},
		{Query: `CREATE TABLE IF NOT EXISTS ` + s.MessagesTable(p.Topic) + ` (
			"offset" BIGSERIAL,
			"uuid" VARCHAR(255) NOT NULL,
			"created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
			"payload" ` + s.PayloadColumnType(p.Topic) + ` DEFAULT NULL,
			"metadata" JSON NOT NULL DEFAULT '{}',
			"transaction_id" xid8 NOT NULL DEFAULT pg_current_xact_id(),
			PRIMARY KEY ("transaction_id", "offset")
		)`},
	}, nil
}

// InsertQuery inserts messages in one statement whose text does not depend on their
// number (one array per column; batch.go), in the order given: offsets follow it.
func (s PostgresSchema) InsertQuery(p wsql.InsertQueryParams) (wsql.Query, error) {
	uuids, payloads, metadata := make([]string, len(p.Msgs)), make([][]byte, len(p.Msgs)), make([]string, len(p.Msgs))
	for i, m := range p.Msgs {
		md, err := jsonx.Marshal(m.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("could not marshal metadata into JSON for message %s: %w", m.UUID, err)
		}
		uuids[i], payloads[i], metadata[i] = m.UUID, m.Payload, string(md)
	}
	var ps any = payloads
	if s.PayloadColumnType(p.Topic) != "BYTEA" { // JSON: text
		strs := make([]string, len(payloads))
		for i, b := range payloads {
			strs[i] = string(b)
		}
		ps = strs
	}
	return wsql.Query{Query: `INSERT INTO ` + s.MessagesTable(p.Topic) + ` (uuid, payload, metadata, transaction_id)
		SELECT u, p, m, pg_current_xact_id() FROM unnest($1::varchar[], $2::` + s.PayloadColumnType(p.Topic) + `[], $3::json[])
		WITH ORDINALITY AS v(u, p, m, n) ORDER BY n`, Args: []any{uuids, ps, metadata}}, nil
}

// UnmarshalMessage turns a row into a message, as watermill-sql's does, except that
// metadata which is not a JSON object of strings (a core's plain INSERT can write any
// JSON there) does not stop the topic: the message keeps its payload and says what
// was wrong, as on SQLite and MySQL.
func (s PostgresSchema) UnmarshalMessage(p wsql.UnmarshalMessageParams) (wsql.Row, error) {
	var r wsql.Row
	var xid wsql.XID8
	if err := p.Row.Scan(&r.Offset, &xid, &r.UUID, &r.Payload, &r.Metadata); err != nil {
		return wsql.Row{}, fmt.Errorf("scanning message row: %w", err)
	}
	r.Msg = message.NewMessage(string(r.UUID), r.Payload)
	r.Msg.Metadata = decodeMetadata(r.Metadata)
	r.ExtraData = map[string]any{"transaction_id": xid}
	return r, nil
}

// decodeMetadata decodes a topic row's metadata (the three schemas' UnmarshalMessage). A row written by hand with metadata
// that is not a JSON object of strings must not stop the topic: the message keeps its
// payload, and its metadata says what was wrong.
func decodeMetadata(md []byte) message.Metadata {
	m := message.Metadata{}
	if len(md) == 0 {
		return m
	}
	if err := jsonx.Unmarshal(md, &m); err != nil {
		return message.Metadata{"herald_metadata_error": err.Error()}
	}
	if m == nil { // JSON null
		m = message.Metadata{}
	}
	return m
}

// RequiresTransaction reports that the schema is created in a transaction, under the lock.
func (s PostgresSchema) RequiresTransaction() bool { return true }

// SelectQuery reads the batch after the consumer group's offset. watermill-sql asks for
// the rows after it as "the same transaction and a later offset, or a later
// transaction", which PostgreSQL answers with a bitmap scan of every row after the
// offset, sorted to take the batch: each read cost the whole unconsumed backlog (28 ms
// for a batch of 250 at the head of 21,000 email messages, against 1.2 ms here). As a
// row comparison the same condition is a range of the primary key: the scan starts at
// the offset and stops after the batch (ADR 0014).
func (s PostgresSchema) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	next, batch, err := nextOffset(p, s.SubscribeBatchSize)
	if err != nil {
		return wsql.Query{}, err
	}
	return wsql.Query{Query: `WITH last_processed AS (` + next.Query + `)
		SELECT "offset", transaction_id, uuid, payload, metadata FROM ` + s.MessagesTable(p.Topic) + `
		WHERE ("transaction_id", "offset") > (SELECT last_processed_transaction_id, offset_acked FROM last_processed)
			AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id, "offset" LIMIT ` + strconv.Itoa(batch), Args: next.Args}, nil
}

// NewPublisher returns a publisher that writes topics in their own statements.
func (db *DB) NewPublisher(logger watermill.LoggerAdapter) (message.Publisher, error) {
	pub, err := wsql.NewPublisher(db.beginner(), wsql.PublisherConfig{
		SchemaAdapter: db.SchemaAdapter(0),
	}, logger)
	if err != nil {
		return nil, err
	}
	return wakingPublisher{Publisher: pub, db: db}, nil
}

// NewTxPublisher returns a publisher that writes inside an ongoing transaction; call
// Wake with its topics after the commit.
func (db *DB) NewTxPublisher(tx wsql.ContextExecutor, logger watermill.LoggerAdapter) (message.Publisher, error) {
	return wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: db.SchemaAdapter(0)}, logger)
}

// NewSubscriber returns a subscriber of SQL topics.
func (db *DB) NewSubscriber(cfg TransportConfig, logger watermill.LoggerAdapter) (*Subscriber, error) {
	cfg.setDefaults()
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	schema, offsets := db.SchemaAdapter(cfg.BatchSize), db.OffsetsAdapter()
	// watermill-sql's subscriber only creates topic tables here.
	init, err := wsql.NewSubscriber(db.subBeginner(), wsql.SubscriberConfig{
		ConsumerGroup: cfg.ConsumerGroup, SchemaAdapter: schema, OffsetsAdapter: offsets, InitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("creating SQL subscriber: %w", err)
	}
	sub := &Subscriber{db: db.subBeginner(), cfg: cfg, schema: schema, offsets: offsets, init: init,
		logger: logger, closing: make(chan struct{}), wakes: &db.wakes, store: db}
	if db.Dialect != SQLite {
		sub.conns = db.sub
	}
	return sub, nil
}

// InitTopic creates the tables of a topic.
func (db *DB) InitTopic(topic string) error {
	s, err := db.NewSubscriber(TransportConfig{}, nil)
	if err != nil {
		return err
	}
	defer s.Close() //nolint:errcheck // nothing was subscribed
	return s.SubscribeInitialize(topic)
}
