package sqlstore

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Wake-ups: a subscriber polls its topic when it has nothing to do. Topics that only
// Herald writes (every topic but the outboxes) are also published to by this
// process's own committers; they wake the topic's subscriptions right after the
// commit, so a message published here is read at once, and an idle subscription of
// such a topic can poll slowly (TransportConfig.IdlePollMax). Messages published by
// another Herald instance are still found by the polls.

type wakeHub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// listen returns a channel that receives after each commit that published to topic,
// and a function that stops it.
func (h *wakeHub) listen(topic string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[chan struct{}]struct{}{}
	}
	if h.subs[topic] == nil {
		h.subs[topic] = map[chan struct{}]struct{}{}
	}
	h.subs[topic][c] = struct{}{}
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs[topic], c)
	}
}

// wake tells the subscriptions of topics that a commit published to them.
func (h *wakeHub) wake(topics ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range topics {
		for c := range h.subs[t] {
			select {
			case c <- struct{}{}:
			default: // already woken
			}
		}
	}
}

// Wake tells this process's subscriptions of topics that a committed transaction
// published to them. Publishers of this package call it; code that publishes with
// NewTxPublisher in its own transaction calls it after the commit.
func (db *DB) Wake(topics ...string) { db.wakes.wake(topics...) }

// wakingPublisher wakes the subscriptions of a topic after each publish it committed.
type wakingPublisher struct {
	message.Publisher
	db *DB
}

func (p wakingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	p.db.Wake(topic)
	return nil
}
