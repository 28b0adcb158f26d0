package service_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// TestInboxStreamReadAndUnread reads the in-app inbox stream (Server-Sent Events) with
// a real HTTP client over TCP while an event is delivered, then marks the message read.
func TestInboxStreamReadAndUnread(t *testing.T) {
	t.Parallel()
	svc := start(t)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.Server.Serve(ln) }()
	t.Cleanup(func() { _ = svc.Server.Shutdown(context.Background()) })
	base := "http://" + ln.Addr().String()
	call := func(method, path string) *http.Response {
		req, _ := http.NewRequestWithContext(context.Background(), method, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	putRecipient(t, svc, notify.Recipient{ID: "sse-1", Contacts: notify.Contacts{Phone: "+8613800138009"},
		Preferences: notify.Preferences{Channels: map[string][]notify.Channel{"*": {"inapp"}}}})

	stream := call(http.MethodGet, "/v1/recipients/sse-1/inbox/stream") //nolint:bodyclose // closed below
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK || stream.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", stream.StatusCode, stream.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	commit(t, svc, false, posted("sse-evt-1", "sse-1", "88.00"))
	var msg sqlstore.InboxMessage
	var id string
	deadline := time.After(10 * time.Second)
	for msg.ID == 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream closed")
			}
			if v, ok := strings.CutPrefix(l, "id: "); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(l, "data: "); ok {
				if err := json.Unmarshal([]byte(v), &msg); err != nil {
					t.Fatal(err)
				}
			}
		case <-deadline:
			t.Fatal("no message on the stream")
		}
	}
	lag := time.Since(msg.CreatedAt)
	t.Logf("inbox message pushed %s after its delivery", lag.Round(time.Millisecond))
	if lag > time.Second || id != fmt.Sprint(msg.ID) || !strings.Contains(msg.Body, "88.00") {
		t.Fatalf("streamed %+v (id %s) %s after delivery", msg, id, lag)
	}

	var page sqlstore.InboxPage
	resp := call(http.MethodGet, "/v1/recipients/sse-1/inbox")
	_ = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if page.Unread != 1 || len(page.Messages) != 1 {
		t.Fatalf("inbox: %+v", page)
	}
	resp = call(http.MethodPost, fmt.Sprintf("/v1/recipients/sse-1/inbox/%d/read", msg.ID))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("read: %d", resp.StatusCode)
	}
	resp = call(http.MethodGet, "/v1/recipients/sse-1/inbox")
	_ = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if page.Unread != 0 || page.Messages[0].ReadAt == nil {
		t.Fatalf("after read: %+v", page)
	}
	resp = call(http.MethodPost, fmt.Sprintf("/v1/recipients/someone-else/inbox/%d/read", msg.ID))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another recipient's message: %d", resp.StatusCode)
	}
}

// The fan-out writes in-app messages to the inbox itself only where the in-app
// handler would add nothing: with a recipient cap, they take the queue, and the cap
// holds the second message back.
func TestRecipientCapHoldsInAppMessages(t *testing.T) {
	t.Parallel()
	for _, capped := range []bool{false, true} {
		t.Run(fmt.Sprintf("capped=%v", capped), func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(backends[0].url(t))
			if capped {
				cfg.RecipientCap = "1/1h"
			}
			svc := startWith(t, cfg)
			putRecipient(t, svc, notify.Recipient{ID: "cap-1", Contacts: notify.Contacts{Phone: "+8613800138011"},
				Preferences: notify.Preferences{Channels: map[string][]notify.Channel{"*": {"inapp"}}}})
			commit(t, svc, false, posted("cap-evt-1", "cap-1", "1.00"))
			if got := channelsOf(terminal(t, svc, "cap-evt-1")); got != "inapp:sent" {
				t.Fatalf("first event: %s", got)
			}
			commit(t, svc, false, posted("cap-evt-2", "cap-1", "2.00"))
			if !capped {
				if got := channelsOf(terminal(t, svc, "cap-evt-2")); got != "inapp:sent" {
					t.Fatalf("second event without a cap: %s", got)
				}
				return
			}
			waitFor(t, "the cap to hold the second message", func() bool {
				ds, err := svc.DB.Deliveries().ByEvent(context.Background(), "cap-evt-2")
				if err != nil {
					t.Fatal(err)
				}
				return len(ds) == 1 && strings.Contains(ds[0].LastError, "cap")
			})
			ds, err := svc.DB.Deliveries().ByEvent(context.Background(), "cap-evt-2")
			if err != nil {
				t.Fatal(err)
			}
			page, err := svc.DB.Inbox().List(context.Background(), "cap-1", "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if ds[0].Status == notify.StatusSent || len(page.Messages) != 1 {
				t.Fatalf("capped: second delivery %s, inbox %d messages; want it held and 1 message", ds[0].Status, len(page.Messages))
			}
		})
	}
}
