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
)

// Subscriber consumes SQL topics. It keeps watermill-sql's model and reuses its schema
// and offsets adapters: a batch of rows is read in a transaction and the consumer
// group's offset (or the queue's acked flags) is moved in that same transaction once
// the batch is handled, so a crash redelivers, never loses. It differs in one way:
// up to Concurrency messages of a batch are handed out at once instead of one after
// the other, so that handlers can work on them side by side and commit their writes
// together (DB.Group). Messages with the same key (TransportConfig.Key: the account of
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
	once    sync.Once
	wg      sync.WaitGroup
	closed  atomic.Bool
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
	var wait time.Duration
	for {
		// readCtx ends when ctx does or the subscriber closes.
		t := time.NewTimer(wait)
		select {
		case <-readCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if readCtx.Err() != nil {
			return
		}
		empty, err := s.batch(ctx, readCtx, topic, out)
		switch {
		case err != nil:
			if ctx.Err() == nil && !s.closed.Load() {
				log.Error("Reading a batch failed, will retry", err, nil)
			}
			wait = s.cfg.RetryInterval
		case empty:
			wait = s.cfg.PollInterval
		default:
			wait = 0
		}
	}
}

// batch reads one batch, hands its messages out and acks the handled prefix. empty
// reports that there was nothing to hand out.
func (s *Subscriber) batch(ctx, readCtx context.Context, topic string, out chan<- *message.Message) (empty bool, err error) {
	// The transaction outlives a cancelled ctx so that what was handled is acked at
	// shutdown; only the read is interrupted.
	tctx := context.WithoutCancel(ctx)
	tx, err := s.db.BeginTx(tctx, &stdsql.TxOptions{Isolation: s.schema.SubscribeIsolationLevel()})
	if err != nil {
		return false, fmt.Errorf("beginning the read of %s: %w", topic, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	rows, err := s.read(readCtx, tx, topic)
	if err != nil || len(rows) == 0 {
		return err == nil, err
	}
	for _, r := range rows {
		q, err := s.offsets.ConsumedMessageQuery(wsql.ConsumedMessageQueryParams{Topic: topic, Row: r, ConsumerGroup: s.cfg.ConsumerGroup})
		if err != nil {
			return false, err
		}
		if !q.IsZero() {
			if _, err := tx.ExecContext(tctx, q.Query, q.Args...); err != nil {
				return false, fmt.Errorf("marking a message of %s consumed: %w", topic, err)
			}
		}
	}
	acked := s.dispatch(ctx, topic, rows, out)
	if acked == 0 {
		return true, nil
	}
	ack, err := s.offsets.AckMessageQuery(wsql.AckMessageQueryParams{Topic: topic, LastRow: rows[acked-1], Rows: rows, ConsumerGroup: s.cfg.ConsumerGroup})
	if err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(tctx, ack.Query, ack.Args...); err != nil {
		return false, fmt.Errorf("acking %d messages of %s: %w", acked, topic, err)
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing the ack of %d messages of %s: %w", acked, topic, err)
	}
	return false, nil
}

func (s *Subscriber) read(ctx context.Context, tx wsql.Tx, topic string) ([]wsql.Row, error) {
	sel, err := s.schema.SelectQuery(wsql.SelectQueryParams{Topic: topic, ConsumerGroup: s.cfg.ConsumerGroup, OffsetsAdapter: s.offsets})
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

type handed struct {
	i     int
	acked bool
}

// dispatch hands the batch's messages out, up to Concurrency at once and one at a time
// per key, and returns how many leading messages were acked.
func (s *Subscriber) dispatch(ctx context.Context, topic string, rows []wsql.Row, out chan<- *message.Message) int {
	keys := make([]string, len(rows))
	if s.cfg.Key != nil {
		for i, r := range rows {
			keys[i] = s.cfg.Key(topic, r.Msg)
		}
	}
	acked := make([]bool, len(rows))
	results := make(chan handed, len(rows))
	busy := map[string]bool{}
	pending := make([]int, len(rows))
	for i := range pending {
		pending[i] = i
	}
	inflight, stopping := 0, false
	for {
		if !stopping {
			blocked := map[string]bool{}
			rest := pending[:0]
			for _, i := range pending {
				k := keys[i]
				if inflight < s.cfg.Concurrency && (k == "" || !busy[k] && !blocked[k]) {
					if k != "" {
						busy[k] = true
					}
					inflight++
					go func(i int) { results <- handed{i, s.send(ctx, rows[i].Msg, out)} }(i)
					continue
				}
				if k != "" {
					blocked[k] = true
				}
				rest = append(rest, i)
			}
			pending = rest
		}
		if inflight == 0 {
			break
		}
		h := <-results
		inflight--
		busy[keys[h.i]] = false
		acked[h.i] = h.acked
		if !h.acked {
			stopping = true // shutdown or ack deadline: finish what is out, hand out no more
		}
	}
	n := 0
	for n < len(acked) && acked[n] {
		n++
	}
	return n
}

// send hands msg out until it is acked (true), resending it after a nack; false when
// the subscriber closes, ctx ends or the ack deadline passes first.
func (s *Subscriber) send(ctx context.Context, msg *message.Message, out chan<- *message.Message) bool {
	if s.cfg.AckDeadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.AckDeadline)
		defer cancel()
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	for {
		select {
		case out <- msg:
		case <-s.closing:
			return false
		case <-ctx.Done():
			return false
		}
		select {
		case <-msg.Acked():
			return true
		case <-msg.Nacked():
			msg = msg.Copy()
			msg.SetContext(mctx)
			if s.cfg.ResendInterval > 0 {
				t := time.NewTimer(s.cfg.ResendInterval)
				select {
				case <-t.C:
				case <-s.closing:
					t.Stop()
					return false
				case <-ctx.Done():
					t.Stop()
					return false
				}
			}
		case <-s.closing:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
