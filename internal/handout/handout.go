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
	// next[i] is the message after i with the same key (-1: none); ready holds, in the
	// order they became free to go, the messages whose key has nothing out before them.
	next := make([]int, len(msgs))
	ready := make([]int, 0, len(msgs))
	last := make(map[string]int)
	for i, k := range keys {
		next[i] = -1
		if k == "" {
			ready = append(ready, i)
			continue
		}
		if j, ok := last[k]; ok {
			next[j] = i
		} else {
			ready = append(ready, i)
		}
		last[k] = i
	}
	acked := make([]bool, len(msgs))
	results := make(chan handed, len(msgs))
	inflight, head, stopping := 0, 0, false
	for {
		for !stopping && inflight < concurrency && head < len(ready) {
			i := ready[head]
			head++
			inflight++
			go func() { results <- handed{i, send(ctx, cfg, msgs[i], out)} }()
		}
		if inflight == 0 {
			break
		}
		h := <-results
		inflight--
		acked[h.i] = h.acked
		if !h.acked {
			stopping = true // shutdown or ack deadline: finish what is out, hand out no more
		} else if j := next[h.i]; j >= 0 {
			ready = append(ready, j)
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
	// The message's context ends when the hand-out does (acked, given up).
	var cancel context.CancelFunc
	if cfg.AckDeadline > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.AckDeadline)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	msg.SetContext(ctx)
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
			msg.SetContext(ctx)
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
