// Package outbox is what a Go banking core imports: it writes Herald events into the
// outbox table inside the core's own transaction, so an event exists if and only if the
// business change it describes was committed.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// Config of a Writer.
type Config struct {
	// Dialect of the core's database. Default sqlite.
	Dialect sqlstore.Dialect
	// Topic is the outbox topic. Default: by the event's lane, "events" (table
	// herald_events) or, for one-time passwords, security and fraud alerts,
	// "events.critical" (table herald_events_critical).
	Topic string
}

func (c *Config) setDefaults() {
	if c.Dialect == "" {
		c.Dialect = sqlstore.SQLite
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.Dialect != sqlstore.SQLite && c.Dialect != sqlstore.Postgres && c.Dialect != sqlstore.MySQL {
		return fmt.Errorf("outbox: unsupported dialect %q", c.Dialect)
	}
	return nil
}

// Writer writes events into the outbox.
type Writer struct {
	cfg    Config
	schema wsql.SchemaAdapter
}

// New returns a Writer.
func New(cfg Config) (*Writer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Writer{cfg: cfg, schema: sqlstore.SchemaAdapterFor(cfg.Dialect, 0)}, nil
}

// Write validates the events and inserts them into the outbox inside tx. Nothing is
// written when any event is invalid (the error is a *notify.ValidationError naming
// the event and field). Roll tx back and no notification is ever sent.
func (w *Writer) Write(ctx context.Context, tx *sql.Tx, events ...notify.Event) error {
	if tx == nil {
		return errors.New("outbox: nil transaction")
	}
	if len(events) == 0 {
		return nil
	}
	byTopic := map[string]message.Messages{}
	var topics []string // in first-seen order, for a stable statement order
	for i := range events {
		m, err := Message(&events[i])
		if err != nil {
			return fmt.Errorf("outbox: event %d: %w", i, err)
		}
		m.SetContext(ctx)
		t := w.cfg.Topic
		if t == "" {
			t = sqlstore.EventsTopicFor(events[i].Lane())
		}
		if _, ok := byTopic[t]; !ok {
			topics = append(topics, t)
		}
		byTopic[t] = append(byTopic[t], m)
	}
	pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: w.schema}, nil)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for _, t := range topics {
		if err := pub.Publish(t, byTopic[t]...); err != nil {
			return fmt.Errorf("outbox: writing %d events: %w", len(byTopic[t]), err)
		}
	}
	return nil
}

// Message validates an event and encodes it as the outbox message Herald reads: the
// event id is the message UUID, the JSON event the payload, and the metadata carries
// the account id (the partition key) and the type.
func Message(e *notify.Event) (*message.Message, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	m := message.NewMessage(e.ID, payload)
	m.Metadata.Set("event_type", e.Type)
	if e.AccountID != "" {
		m.Metadata.Set("account_id", e.AccountID)
	}
	return m, nil
}
