package push_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/push"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/testtls"
	"github.com/heraldhq/herald/notify"
)

func store(t *testing.T, tokens ...string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background(), []string{"push"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Recipients().Put(context.Background(), notify.Recipient{ID: "r1", Contacts: notify.Contacts{PushTokens: tokens}}); err != nil {
		t.Fatal(err)
	}
	return db
}

func message(token string) notify.Message {
	return notify.Message{DeliveryID: "dlv_push1", EventType: "security.login", Channel: notify.ChannelPush, RecipientID: "r1",
		Address: notify.Address(token), Content: notify.Content{Title: "New sign-in", Text: "A new device signed in"}}
}

func tokensOf(t *testing.T, db *sqlstore.DB) []string {
	r, err := db.Recipients().Get(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	return r.Contacts.PushTokens
}

// TestAPNs talks HTTP/2 over TLS to a local server answering like Apple's API.
func TestAPNs(t *testing.T) {
	t.Parallel()
	var authed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 || r.Header.Get("apns-topic") != "com.bank.app" {
			http.Error(w, `{"reason":"BadTopic"}`, http.StatusBadRequest)
			return
		}
		if auth := r.Header.Get("authorization"); strings.HasPrefix(auth, "bearer ey") {
			authed.Add(1)
		} else {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"reason":"MissingProviderToken"}`))
			return
		}
		var payload map[string]any
		_ = json.NewDecoder(r.Body).Decode(&payload)
		switch strings.TrimPrefix(r.URL.Path, "/3/device/") {
		case "dead":
			w.WriteHeader(http.StatusGone)
			_, _ = w.Write([]byte(`{"reason":"Unregistered","timestamp":1700000000000}`))
		case "busy":
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"reason":"TooManyRequests"}`))
		default:
			w.Header().Set("apns-id", r.Header.Get("apns-id"))
		}
	}))
	srv.EnableHTTP2 = true
	srvTLS, cliTLS := testtls.New(t)
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	a, err := push.NewAPNs(push.APNsConfig{KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		KeyID: "KEY123", TeamID: "TEAM123", Topic: "com.bank.app", URL: srv.URL, TLSConfig: cliTLS, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db := store(t, "apns:good", "apns:dead")
	p, _ := push.New(a, nil, db.Recipients())
	r, err := p.Send(context.Background(), message("apns:good"))
	if err != nil || len(r.ProviderMessageID) != 36 {
		t.Fatalf("send: %+v %v", r, err)
	}
	again, _ := p.Send(context.Background(), message("apns:good"))
	if again.ProviderMessageID != r.ProviderMessageID {
		t.Fatal("the apns-id must be derived from the delivery id")
	}
	if _, err := p.Send(context.Background(), message("apns:busy")); err == nil || notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("429: %v", err)
	}
	if _, err := p.Send(context.Background(), message("apns:dead")); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("410: %v", err)
	}
	if got := tokensOf(t, db); len(got) != 1 || got[0] != "apns:good" {
		t.Fatalf("tokens after Unregistered: %v", got)
	}
	if authed.Load() != 4 {
		t.Fatalf("%d authenticated requests, want 4", authed.Load())
	}
}

// TestFCM gets OAuth2 tokens with a service-account JWT from a local token endpoint and
// sends through a local FCM v1 API, both over TLS.
func TestFCM(t *testing.T) {
	t.Parallel()
	var tokenCalls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || r.PostForm.Get("assertion") == "" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		tokenCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"ya29.test","token_type":"Bearer","expires_in":3600}`))
	})
	mux.HandleFunc("/v1/projects/bank-app/messages:send", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer ya29.test" {
			http.Error(w, `{"error":{"status":"UNAUTHENTICATED"}}`, http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Message struct {
				Token        string            `json:"token"`
				Notification map[string]string `json:"notification"`
				Data         map[string]string `json:"data"`
			} `json:"message"`
		}
		_ = json.Unmarshal(body, &req)
		switch req.Message.Token {
		case "dead":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
				"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`))
		case "busy":
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":503,"status":"UNAVAILABLE","message":"try later"}}`))
		default:
			if req.Message.Notification["title"] != "New sign-in" || req.Message.Data["delivery_id"] != "dlv_push1" {
				http.Error(w, `{"error":{"status":"INVALID_ARGUMENT","message":"bad message"}}`, http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{"name":"projects/bank-app/messages/0:1700000000"}`))
		}
	})
	srv := httptest.NewUnstartedServer(mux)
	srvTLS, cliTLS := testtls.New(t)
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	creds, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "bank-app", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "herald@bank-app.iam.gserviceaccount.com", "token_uri": srv.URL + "/token"})
	f, err := push.NewFCM(context.Background(), push.FCMConfig{CredentialsJSON: creds, URL: srv.URL,
		Client: &http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS}}})
	if err != nil {
		t.Fatal(err)
	}
	db := store(t, "fcm:good", "dead")
	p, _ := push.New(nil, f, db.Recipients())
	for i := 0; i < 2; i++ {
		r, err := p.Send(context.Background(), message("fcm:good"))
		if err != nil || r.ProviderMessageID != "projects/bank-app/messages/0:1700000000" {
			t.Fatalf("send: %+v %v", r, err)
		}
	}
	if tokenCalls.Load() != 1 {
		t.Fatalf("%d token requests, want 1 (cached)", tokenCalls.Load())
	}
	_, err = p.Send(context.Background(), message("fcm:busy"))
	if notify.ClassOf(err) != notify.ClassTransient || notify.AfterOf(err) != 2*time.Second {
		t.Fatalf("503: %v", err)
	}
	if _, err := p.Send(context.Background(), message("dead")); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("UNREGISTERED: %v", err)
	}
	if got := tokensOf(t, db); len(got) != 1 || got[0] != "fcm:good" {
		t.Fatalf("tokens after UNREGISTERED: %v", got)
	}
	if _, err := p.Send(context.Background(), message("apns:x")); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("APNs token without APNs: %v", err)
	}
}
