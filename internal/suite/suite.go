// Package suite runs Watermill's universal Pub/Sub tests with some of them left out.
package suite

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// Run runs tests.TestPubSub's list (in parallel, as it does) minus the tests named in
// skip; the callers say why they skip one.
func Run(t *testing.T, features tests.Features, single tests.PubSubConstructor,
	constructor func(t *testing.T, group string) (message.Publisher, message.Subscriber), skip map[string]bool) {
	if len(skip) == 0 {
		tests.TestPubSub(t, features, single, constructor)
		return
	}
	for _, f := range []func(*testing.T, tests.TestContext, tests.PubSubConstructor){
		tests.TestPublishSubscribe, tests.TestConcurrentSubscribe, tests.TestConcurrentSubscribeMultipleTopics,
		tests.TestResendOnError, tests.TestNoAck, tests.TestContinueAfterSubscribeClose, tests.TestConcurrentClose,
		tests.TestContinueAfterErrors, tests.TestPublishSubscribeInOrder, tests.TestPublisherClose, tests.TestTopic,
		tests.TestMessageCtx, tests.TestSubscribeCtx, tests.TestNewSubscriberReceivesOldMessages,
	} {
		name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
		name = name[strings.LastIndex(name, ".")+1:]
		if skip[name] {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, tests.TestContext{TestID: tests.NewTestID(), Features: features}, single)
		})
	}
	if skip["TestConsumerGroups"] {
		return
	}
	t.Run("TestConsumerGroups", func(t *testing.T) {
		t.Parallel()
		tests.TestConsumerGroups(t, tests.TestContext{TestID: tests.NewTestID(), Features: features}, constructor)
	})
}
