package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/testtls"
	"github.com/heraldhq/herald/notify"
)

const secret = "whsec_0123456789abcdef"

func TestWebhook(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var got webhook.Payload
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/gone"):
			http.Error(w, "no such endpoint", http.StatusGone)
		case strings.HasSuffix(r.URL.Path, "/busy"):
			w.Header().Set("Retry-After", "7")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case strings.HasSuffix(r.URL.Path, "/down"):
			http.Error(w, "oops", http.StatusBadGateway)
		default:
			_ = json.Unmarshal(body, &got)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	srvTLS, cliTLS := testtls.New(t)
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()
	p, err := webhook.New(webhook.Config{Secret: secret, Client: &http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS}}})
	if err != nil {
		t.Fatal(err)
	}
	m := notify.Message{DeliveryID: "dlv_1", EventID: "e1", EventType: "transaction.posted", Channel: notify.ChannelWebhook,
		Content: notify.Content{Text: "¥12.00 spent"}, OccurredAt: time.Now()}
	send := func(path string) error {
		m.Address = notify.Address(srv.URL + path)
		_, err := p.Send(context.Background(), m)
		return err
	}
	if err := send("/hook"); err != nil {
		t.Fatal(err)
	}
	if got.DeliveryID != "dlv_1" || got.Text != "¥12.00 spent" {
		t.Fatalf("payload %+v", got)
	}
	if err := send("/gone"); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("410: %v", err)
	}
	err = send("/busy")
	if notify.ClassOf(err) != notify.ClassTransient || notify.AfterOf(err) != 7*time.Second {
		t.Fatalf("429: %v after %s", err, notify.AfterOf(err))
	}
	if err := send("/down"); err == nil || notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("502: %v", err)
	}
	m.Address = "ftp://example.com/x"
	if _, err := p.Send(context.Background(), m); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("ftp URL: %v", err)
	}
	if calls.Load() != 4 {
		t.Fatalf("%d calls, want 4", calls.Load())
	}
}

func TestVerifyRejectsTamperingAndReplays(t *testing.T) {
	t.Parallel()
	body := []byte(`{"delivery_id":"dlv_1"}`)
	now := time.Now().Unix()
	sig := webhook.Sign(secret, now, body)
	ts := itoa
	if err := webhook.Verify(secret, ts(now), sig, body, time.Minute); err != nil {
		t.Fatal(err)
	}
	if webhook.Verify(secret, ts(now), sig, []byte(`{"delivery_id":"dlv_2"}`), time.Minute) == nil {
		t.Fatal("tampered body accepted")
	}
	if webhook.Verify("another-secret-0000", ts(now), sig, body, time.Minute) == nil {
		t.Fatal("wrong secret accepted")
	}
	old := now - 600
	if webhook.Verify(secret, ts(old), webhook.Sign(secret, old, body), body, 5*time.Minute) == nil {
		t.Fatal("replay of a 10-minute-old request accepted")
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
