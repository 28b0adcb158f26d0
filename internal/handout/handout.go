// Package handout hands a batch of Watermill messages to a handler side by side: up to
// a number at once, one at a time per key (in batch order), each resent after a nack
// until it is acked. Herald's SQL and Kafka subscribers share it.
package handout

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Config of a Dispatcher.
type Config struct {
	// Concurrency is how many messages are out at once (at least 1).
	Concurrency int
	// AckDeadline: a message not acked within it is given up (0: no deadline).
	AckDeadline time.Duration
	// ResendInterval is the wait before a nacked message is handed out again.
	ResendInterval time.Duration
	// Closing, when closed, stops the hand-out as ctx does.
	Closing <-chan struct{}
}

type handed struct {
	i     int
	acked bool
}

// Dispatch hands msgs out on out, up to Concurrency at once and, among messages with
// the same non-empty key (keys[i] is msgs[i]'s), one at a time in order. It returns how
// many leading messages were acked: once one is given up (ctx done, Closing, ack
// deadline), no more are handed out and Dispatch returns when those out have ended.
func Dispatch(ctx context.Context, cfg Config, msgs []*message.Message, keys []string, out chan<- *message.Message) int {
	concurrency := max(cfg.Concurrency, 1)
	acked := make([]bool, len(msgs))
	results := make(chan handed, len(msgs))
	busy := map[string]bool{}
	pending := make([]int, len(msgs))
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
				if inflight < concurrency && (k == "" || !busy[k] && !blocked[k]) {
					if k != "" {
						busy[k] = true
					}
					inflight++
					go func(i int) { results <- handed{i, send(ctx, cfg, msgs[i], out)} }(i)
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
// Closing closes, ctx ends or the ack deadline passes first.
func send(ctx context.Context, cfg Config, msg *message.Message, out chan<- *message.Message) bool {
	if cfg.AckDeadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.AckDeadline)
		defer cancel()
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	for {
		select {
		case out <- msg:
		case <-cfg.Closing:
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
			if cfg.ResendInterval > 0 {
				t := time.NewTimer(cfg.ResendInterval)
				select {
				case <-t.C:
				case <-cfg.Closing:
					t.Stop()
					return false
				case <-ctx.Done():
					t.Stop()
					return false
				}
			}
		case <-cfg.Closing:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
