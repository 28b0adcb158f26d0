package middleware

import "github.com/ThreeDotsLabs/watermill/message"

// stackReserve is how much stack a handler's goroutine is given before the handler
// runs. Watermill starts a goroutine for each message, with the runtime's starting
// stack (2 KB, or the average of the stacks it has seen, which Herald's many small
// goroutines keep low), and the handler's calls (the middleware chain, the event's
// decode, the database driver) grow it by doubling, copying the stack each time:
// runtime.copystack was 5.6-7.4% of Herald's CPU in a catch-up. One frame of this size
// at the top of the goroutine makes the runtime grow the stack once, to 16 KB, while
// there is almost nothing on it to copy. 16 KB (a 32 KB stack) cost more: the
// collector shrank the stacks of the goroutines parked on a commit, copying them again
// (docs/performance.md, Optimisations, session 23).
const stackReserve = 8 << 10

// GrowStack grows the stack of the goroutine that handles a message, before the
// handler runs (stackReserve). It goes first in the router's chain.
func GrowStack(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		_ = growStack(0)
		return h(msg)
	}
}

// growStack has a frame of stackReserve bytes; the read at an index the compiler
// cannot know keeps the array in it.
//
//go:noinline
func growStack(i int) byte {
	var buf [stackReserve]byte
	return buf[i%stackReserve]
}
