package wechat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/wechat"
	"github.com/heraldhq/herald/notify"
)

// fakeAPI reproduces the parts of the WeChat API Herald uses: tokens that expire,
// template sends and the errcodes Herald must classify.
type fakeAPI struct {
	mu       sync.Mutex
	issued   int
	valid    string
	sent     []map[string]any
	busyOnce bool
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/cgi-bin/token":
		if r.URL.Query().Get("appid") != "wx123" || r.URL.Query().Get("secret") != "sekret" {
			_ = json.NewEncoder(w).Encode(map[string]any{"errcode": 40013, "errmsg": "invalid appid"})
			return
		}
		time.Sleep(20 * time.Millisecond) // long enough for concurrent senders to pile up
		f.issued++
		f.valid = fmt.Sprintf("tok-%d", f.issued)
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": f.valid, "expires_in": 7200})
	case "/cgi-bin/message/template/send":
		if r.URL.Query().Get("access_token") != f.valid {
			_ = json.NewEncoder(w).Encode(map[string]any{"errcode": 42001, "errmsg": "access_token expired"})
			return
		}
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		code := 0
		switch body["touser"] {
		case "o-unsubscribed":
			code = 43004
		case "o-invalid":
			code = 40003
		case "o-quota":
			code = 45009
		case "o-busy":
			if !f.busyOnce {
				f.busyOnce, code = true, -1
			}
		}
		if code != 0 {
			_ = json.NewEncoder(w).Encode(map[string]any{"errcode": code, "errmsg": "error"})
			return
		}
		f.sent = append(f.sent, body)
		_ = json.NewEncoder(w).Encode(map[string]any{"errcode": 0, "errmsg": "ok", "msgid": 200228332 + len(f.sent)})
	default:
		http.NotFound(w, r)
	}
}

// expire makes WeChat forget the current token.
func (f *fakeAPI) expire() {
	f.mu.Lock()
	f.valid = "none"
	f.mu.Unlock()
}

func msg(openid string) notify.Message {
	return notify.Message{DeliveryID: "dlv_" + openid, EventType: "transaction.posted", Channel: notify.ChannelWeChat,
		Address: notify.Address(openid), Content: notify.Content{Data: map[string]string{"first": "支出提醒", "keyword1": "¥1,234.56"}}}
}

func TestTemplateMessages(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	srv := httptest.NewServer(api)
	defer srv.Close()
	p, err := wechat.New(wechat.Config{AppID: "wx123", AppSecret: "sekret", BaseURL: srv.URL,
		Templates: map[string]string{"transaction.posted": "TPL-POSTED"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := p.Send(ctx, msg("o-alice"))
	if err != nil || r.ProviderMessageID != "200228333" {
		t.Fatalf("send: %+v %v", r, err)
	}
	body := api.sent[0]
	data := body["data"].(map[string]any)
	if body["template_id"] != "TPL-POSTED" || body["client_msg_id"] != "dlv_o-alice" || data["keyword1"].(map[string]any)["value"] != "¥1,234.56" {
		t.Fatalf("sent %v", body)
	}

	// The token expires: 20 concurrent senders refresh it once, and every send succeeds.
	api.expire()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Send(ctx, msg(fmt.Sprintf("o-user%d", i))); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if api.issued != 2 {
		t.Fatalf("%d tokens issued, want 2 (the first and one refresh)", api.issued)
	}

	for openid, want := range map[string]notify.Class{"o-unsubscribed": notify.ClassPermanent, "o-invalid": notify.ClassPermanent,
		"o-quota": notify.ClassTransient} {
		if _, err := p.Send(ctx, msg(openid)); err == nil || notify.ClassOf(err) != want {
			t.Fatalf("%s: %v (%s), want %s", openid, err, notify.ClassOf(err), want)
		}
	}
	_, err = p.Send(ctx, msg("o-quota"))
	if wait := notify.AfterOf(err); wait <= 0 || wait > 24*time.Hour {
		t.Fatalf("quota error waits %s, want until midnight Beijing time", wait)
	}
	if _, err := p.Send(ctx, msg("o-busy")); err == nil || notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("busy: %v", err)
	}
	if _, err := p.Send(ctx, msg("o-busy")); err != nil {
		t.Fatalf("busy then fine: %v", err)
	}
	m := msg("o-alice")
	m.EventType = "balance.low"
	if _, err := p.Send(ctx, m); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("no template: %v", err)
	}
}

func TestWrongCredentialsArePermanent(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&fakeAPI{})
	defer srv.Close()
	p, _ := wechat.New(wechat.Config{AppID: "wx123", AppSecret: "wrong", BaseURL: srv.URL, Templates: map[string]string{"transaction.posted": "T"}})
	if _, err := p.Send(context.Background(), msg("o-alice")); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("wrong secret: %v", err)
	}
}
