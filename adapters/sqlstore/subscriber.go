package sqlstore

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/internal/handout"
)

// Subscriber consumes SQL topics. It reuses watermill-sql's schema and offsets
// adapters: a batch of rows is read, handed out, and the consumer group's offset (or
// the queue's acked flags) is moved once the batch is handled, so a crash redelivers,
// never loses. On PostgreSQL and MySQL a subscription holds its topic with a session
// lock rather than a transaction (lease.go, ADR 0005 and 0012); on SQLite (one process
// per file) it needs no lock. The ack is a write of a group transaction (DB.Group). Unlike
// watermill-sql's subscriber, up to Concurrency messages of a batch are handed out at
// once instead of one after the other, so that handlers can work on them side by side
// and commit their writes together (DB.Group). Messages with the same key (TransportConfig.Key: the account of
// an event, the recipient of a delivery) are still handed out one at a time, in topic
// order, so per-key order holds. With Concurrency 1 it behaves as watermill-sql's own
// subscriber: one message at a time, the next after the previous one's ack.
//
// A nacked message is handed out again after ResendInterval and holds the batch (and
// the later messages of its key) until it is acked. The acked prefix of a batch is
// committed; messages after an unacked one (shutdown, ack deadline) are read again by
// the next query, so handlers must tolerate redelivery (Herald's delivery store does).
//
// Close returns only after every channel it handed out is closed.
type Subscriber struct {
	db      wsql.Beginner
	cfg     TransportConfig
	schema  wsql.SchemaAdapter
	offsets wsql.OffsetsAdapter
	// init creates topic tables (watermill-sql's schema initialization).
	init    *wsql.Subscriber
	logger  watermill.LoggerAdapter
	closing chan struct{}
	wakes   *wakeHub
	once    sync.Once
	wg      sync.WaitGroup
	closed  atomic.Bool
	// conns, when set (PostgreSQL, MySQL), holds the topic without a transaction:
	// see lease.go.
	conns *stdsql.DB
	// store commits acks with other writes.
	store *DB
}

// ErrSubscriberClosed is returned by Subscribe after Close.
var ErrSubscriberClosed = errors.New("subscriber is closed")

// Subscribe starts consuming topic; the channel is closed when ctx is done or the
// subscriber is closed.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if s.closed.Load() {
		return nil, ErrSubscriberClosed
	}
	if err := s.init.SubscribeInitialize(topic); err != nil {
		return nil, err
	}
	bsq, err := s.offsets.BeforeSubscribingQueries(wsql.BeforeSubscribingQueriesParams{Topic: topic, ConsumerGroup: s.cfg.ConsumerGroup})
	if err != nil {
		return nil, fmt.Errorf("before subscribing to %s: %w", topic, err)
	}
	if len(bsq) > 0 {
		if err := s.runInTx(ctx, bsq); err != nil {
			return nil, fmt.Errorf("before subscribing to %s: %w", topic, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	// Reads (which may wait for another instance's lock) also stop when the subscriber
	// closes; the messages' contexts do not.
	readCtx, stopReads := context.WithCancel(ctx)
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer close(out)
		go func() {
			select {
			case <-s.closing:
				stopReads()
			case <-readCtx.Done():
			}
		}()
		defer stopReads()
		if s.conns != nil {
			s.consumeLeased(ctx, readCtx, topic, out)
			return
		}
		s.consume(ctx, readCtx, topic, out)
	}()
	return out, nil
}

func (s *Subscriber) runInTx(ctx context.Context, qs []wsql.Query) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// SubscribeInitialize creates the tables of topic.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	return s.init.SubscribeInitialize(topic)
}

// Close stops every subscription and waits until their channels are closed.
func (s *Subscriber) Close() error {
	s.closed.Store(true)
	s.once.Do(func() { close(s.closing) })
	err := s.init.Close()
	s.wg.Wait()
	return err
}

func (s *Subscriber) consume(ctx, readCtx context.Context, topic string, out chan<- *message.Message) {
	log := s.logger.With(watermill.LogFields{"topic": topic, "consumer_group": s.cfg.ConsumerGroup})
	p := s.newPacer(topic)
	defer p.stop()
	for {
		// readCtx ends when ctx does or the subscriber closes.
		if !p.pause(readCtx) {
			return
		}
		empty, err := s.batch(ctx, readCtx, topic, out)
		if err != nil && ctx.Err() == nil && !s.closed.Load() {
			log.Error("Reading a batch failed, will retry", err, nil)
		}
		p.next(empty, err)
	}
}

// pacer decides when a subscription reads next: at once after a batch, after
// PollInterval when idle (doubling up to IdlePollMax on topics this process wakes),
// after RetryInterval on an error, and at once when a commit publishes to the topic.
type pacer struct {
	cfg     *TransportConfig
	backoff bool
	idle    time.Duration
	wait    time.Duration
	wake    <-chan struct{}
	stop    func()
}

func (s *Subscriber) newPacer(topic string) *pacer {
	p := &pacer{cfg: &s.cfg, idle: s.cfg.PollInterval, stop: func() {}}
	if s.wakes != nil {
		p.wake, p.stop = s.wakes.listen(topic)
		p.backoff = !IsOutboxTopic(topic) && s.cfg.IdlePollMax > s.cfg.PollInterval
	}
	return p
}

// pause waits for the next read; false when ctx ended.
func (p *pacer) pause(ctx context.Context) bool {
	if p.wait > 0 {
		t := time.NewTimer(p.wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-p.wake:
			t.Stop()
			p.idle = p.cfg.PollInterval
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}

// next sets the wait after a read (empty: nothing was handed out).
func (p *pacer) next(empty bool, err error) {
	switch {
	case err != nil:
		p.wait = p.cfg.RetryInterval
	case empty:
		p.wait = p.idle
		if p.backoff {
			p.idle = min(2*p.idle, p.cfg.IdlePollMax)
		}
	default:
		p.wait, p.idle = 0, p.cfg.PollInterval
	}
}

// standby sets the wait of a subscription that does not hold its consumer group.
func (p *pacer) standby(d time.Duration) { p.wait = d }

// batch reads one batch on SQLite, hands its messages out and acks the handled
// prefix. empty reports that there was nothing to hand out. One process per file:
// reads on the read pool, the ack with other writes on the single writer.
func (s *Subscriber) batch(ctx, readCtx context.Context, topic string, out chan<- *message.Message) (empty bool, err error) {
	acked, err := s.handle(ctx, readCtx, poolQuerier{s.store.R}, s.groupExec, topic, out)
	return err == nil && acked == 0, err
}

// handle reads a batch with q, hands its messages out and acks the handled prefix
// with exec; it returns how many messages it acked (0: nothing to hand out, or
// nothing acked).
func (s *Subscriber) handle(ctx, readCtx context.Context, q querier, exec func(context.Context, wsql.Query) error, topic string, out chan<- *message.Message) (int, error) {
	// The writes outlive a cancelled ctx so that what was handled is acked at shutdown;
	// only the read is interrupted.
	tctx := context.WithoutCancel(ctx)
	rows, err := s.read(readCtx, q, topic)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	for _, r := range rows {
		q, err := s.offsets.ConsumedMessageQuery(wsql.ConsumedMessageQueryParams{Topic: topic, Row: r, ConsumerGroup: s.cfg.ConsumerGroup})
		if err != nil {
			return 0, err
		}
		if !q.IsZero() {
			if err := exec(tctx, q); err != nil {
				return 0, fmt.Errorf("marking a message of %s consumed: %w", topic, err)
			}
		}
	}
	acked := s.dispatch(ctx, topic, rows, out)
	if acked == 0 {
		return 0, nil
	}
	ack, err := s.offsets.AckMessageQuery(wsql.AckMessageQueryParams{Topic: topic, LastRow: rows[acked-1], Rows: rows, ConsumerGroup: s.cfg.ConsumerGroup})
	if err != nil {
		return 0, err
	}
	if err := exec(tctx, ack); err != nil {
		return 0, fmt.Errorf("acking %d messages of %s: %w", acked, topic, err)
	}
	return acked, nil
}

// querier runs the subscriber's select: a transaction, or a held connection.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error)
}

// poolQuerier runs the subscriber's select on a pool.
type poolQuerier struct{ db *stdsql.DB }

func (q poolQuerier) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	return q.db.QueryContext(ctx, query, args...) //nolint:rowserrcheck // read checks Err
}

func (s *Subscriber) read(ctx context.Context, tx querier, topic string) ([]wsql.Row, error) {
	offsets := s.offsets
	if s.conns != nil {
		offsets = leasedOffsets{s.offsets}
	}
	p := wsql.SelectQueryParams{Topic: topic, ConsumerGroup: s.cfg.ConsumerGroup, OffsetsAdapter: offsets}
	var sel wsql.Query
	var err error
	if q, ok := s.schema.(MySQLQueueSchema); ok && s.conns != nil {
		sel, err = q.leasedSelectQuery(p)
	} else {
		sel, err = s.schema.SelectQuery(p)
	}
	if err != nil {
		return nil, err
	}
	rs, err := tx.QueryContext(ctx, sel.Query, sel.Args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", topic, err)
	}
	defer func() { _ = rs.Close() }()
	var rows []wsql.Row
	for rs.Next() {
		r, err := s.schema.UnmarshalMessage(wsql.UnmarshalMessageParams{Row: rs})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		rows = append(rows, r)
	}
	if e, ok := rs.(interface{ Err() error }); ok && e.Err() != nil {
		return nil, fmt.Errorf("reading %s: %w", topic, e.Err())
	}
	return rows, nil
}

// dispatch hands the batch's messages out, up to Concurrency at once and one at a time
// per key, and returns how many leading messages were acked.
func (s *Subscriber) dispatch(ctx context.Context, topic string, rows []wsql.Row, out chan<- *message.Message) int {
	msgs, keys := make([]*message.Message, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		msgs[i] = r.Msg
		if s.cfg.Key != nil {
			keys[i] = s.cfg.Key(topic, r.Msg)
		}
	}
	return handout.Dispatch(ctx, handout.Config{Concurrency: s.cfg.Concurrency, AckDeadline: s.cfg.AckDeadline,
		ResendInterval: s.cfg.ResendInterval, Closing: s.closing}, msgs, keys, out)
}
