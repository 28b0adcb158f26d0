package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/smtppeer"
)

// TestServeWithRealProviders runs the `herald serve` binary with a providers file that
// names an SMTP server and an SMS HTTP gateway (both real protocol peers in this
// process), posts an event through the HTTP API and waits for the email and the SMS.
func TestServeWithRealProviders(t *testing.T) {
	bin := buildHerald(t)
	peer := smtppeer.Start(t, false)
	var mu sync.Mutex
	var sms []map[string]string
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var f map[string]string
		_ = json.NewDecoder(r.Body).Decode(&f)
		mu.Lock()
		sms = append(sms, f)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"message_id":"gw-1"}`))
	}))
	defer gw.Close()

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, peer.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	providers := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(providers, fmt.Appendf(nil, `providers:
  - {name: mail, kind: smtp, host: 127.0.0.1, port: %d, username: %s, password: "${SMTP_PW}", from: noreply@bank.example, ca_file: %s}
  - {name: gw, kind: sms-http, url: %s/send}
`, peer.Port, smtppeer.User, ca, gw.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, "serve", "--db", "sqlite://"+filepath.Join(dir, "h.db"), "--addr", addr,
		"--providers", providers, "--channels", "sms,email", "--api-keys", "serve-key-123", "--log-format", "json")
	cmd.Env = append(os.Environ(), "SMTP_PW="+smtppeer.Password)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	post := func(path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer serve-key-123")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	event := `{"event_id":"serve-1","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z","account_id":"6222020200112233",
		"amount":"1234.56","currency":"CNY","direction":"debit","contact":{"phone":"+8613800138000","email":"alice@example.com"}}`
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := post("/v1/events", event)
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST /v1/events: %d %s\n%s", code, body, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		mu.Lock()
		n := len(sms)
		mu.Unlock()
		if n == 1 && len(peer.Messages()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sms %d, email %d after 30s\n%s", n, len(peer.Messages()), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(peer.Messages()[0], "1,234.56") || !strings.Contains(sms[0]["text"], "1,234.56") || sms[0]["to"] != "+8613800138000" {
		t.Fatalf("email %q\nsms %v", peer.Messages()[0], sms[0])
	}
}
