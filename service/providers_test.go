package service_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldhq/herald/adapters/sms/httpgw"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/smtppeer"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/service"
)

// gateway is an SMS HTTP gateway peer: it checks the signature, keeps the requests and
// answers with its message id.
type gateway struct {
	mu   sync.Mutex
	reqs []map[string]string
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get(httpgw.HeaderTimestamp), 10, 64)
	if httpgw.Sign("gw-secret-0123456789", ts, body) != r.Header.Get(httpgw.HeaderSignature) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var f map[string]string
	if err := json.Unmarshal(body, &f); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	g.reqs = append(g.reqs, f)
	n := len(g.reqs)
	g.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"msgid": fmt.Sprintf("gw-%d", n), "status": "accepted"})
}

// TestRealProviders runs Herald with a providers file naming an SMTP server, an SMS
// HTTP gateway and the webhook provider, all real protocol peers in this process:
// one event reaches all three, and the gateway's signed delivery receipt moves the SMS
// to delivered. Not parallel: it sets an environment variable.
func TestRealProviders(t *testing.T) {
	smtpPeer := smtppeer.Start(t, false)
	gw := &gateway{}
	gwSrv := httptest.NewServer(gw)
	defer gwSrv.Close()
	var hooks []webhook.Payload
	var hooksMu sync.Mutex
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify("wh-secret-0123456789", r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		hooksMu.Lock()
		hooks = append(hooks, p)
		hooksMu.Unlock()
	}))
	defer hookSrv.Close()

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, smtpPeer.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_SMTP_PASSWORD", smtppeer.Password)
	file := filepath.Join(dir, "providers.yaml")
	yaml := fmt.Sprintf(`providers:
  - name: mail
    kind: smtp
    host: 127.0.0.1
    port: %d
    tls: starttls
    username: %s
    password: ${TEST_SMTP_PASSWORD}
    from: "Test Bank <noreply@bank.example>"
    ca_file: %s
  - name: gw1
    kind: sms-http
    url: %s/send
    fields: {to: mobile, text: content, reference: client_ref}
    sender: "95588"
    secret: gw-secret-0123456789
    message_id_field: msgid
  - name: hooks
    kind: webhook
    secret: wh-secret-0123456789
`, smtpPeer.Port, smtppeer.User, ca, gwSrv.URL)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(backends[0].url(t))
	cfg.Providers, cfg.Channels = file, []string{"sms", "email", "webhook", "inapp"}
	svc := startWith(t, cfg)
	putRecipient(t, svc, notify.Recipient{ID: "real-1", Locale: "en", Contacts: notify.Contacts{
		Phone: "+8613800138000", Email: "alice@example.com", WebhookURL: hookSrv.URL + "/hook"},
		Preferences: notify.Preferences{Channels: map[string][]notify.Channel{"*": {"sms", "email", "webhook", "inapp"}}}})
	commit(t, svc, false, posted("real-evt-1", "real-1", "1234.56"))
	ended := terminal(t, svc, "real-evt-1")
	if got := channelsOf(ended); got != "email:sent,inapp:sent,sms:sent,webhook:sent" {
		t.Fatalf("deliveries: %s", got)
	}

	msgs := smtpPeer.Messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "1,234.56") || !strings.Contains(msgs[0], "Message-ID: <dlv_") {
		t.Fatalf("SMTP peer got %d messages: %v", len(msgs), msgs)
	}
	gw.mu.Lock()
	reqs := gw.reqs
	gw.mu.Unlock()
	smsID := notify.DeliveryID("real-evt-1", ended[0].OccurredAt, notify.ChannelSMS, "+8613800138000")
	if len(reqs) != 1 || reqs[0]["mobile"] != "+8613800138000" || reqs[0]["client_ref"] != smsID || reqs[0]["sender"] != "95588" ||
		!strings.Contains(reqs[0]["content"], "1,234.56") {
		t.Fatalf("gateway got %v", reqs)
	}
	hooksMu.Lock()
	if len(hooks) != 1 || hooks[0].EventID != "real-evt-1" {
		t.Fatalf("webhooks: %+v", hooks)
	}
	hooksMu.Unlock()
	d, err := svc.DB.Deliveries().Get(t.Context(), smsID)
	if err != nil || d.Provider != "gw1" || d.ProviderMessageID != "gw-1" {
		t.Fatalf("sms delivery %+v %v", d, err)
	}

	receipt := func(body, signature string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/receipts/gw1", strings.NewReader(body))
		ts := time.Now().Unix()
		req.Header.Set(httpgw.HeaderTimestamp, strconv.FormatInt(ts, 10))
		if signature == "" {
			signature = httpgw.Sign("gw-secret-0123456789", ts, []byte(body))
		}
		req.Header.Set(httpgw.HeaderSignature, signature)
		resp, err := svc.Server.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	if code, ctype := receipt(`{"message_id":"gw-1","status":"delivered"}`, "forged"); code != http.StatusUnauthorized ||
		!strings.HasPrefix(ctype, "application/problem+json") {
		t.Fatalf("forged receipt: %d %s", code, ctype)
	}
	if code, _ := receipt(`{"message_id":"gw-1","status":"delivered"}`, ""); code != http.StatusOK {
		t.Fatalf("receipt: %d", code)
	}
	if d, _ := svc.DB.Deliveries().Get(t.Context(), smsID); d.Status != notify.StatusDelivered {
		t.Fatalf("after the receipt: %s", d.Status)
	}
	if code, _ := receipt(`[{"reference":"`+smsID+`","status":"undelivered","error":"absent subscriber"}]`, ""); code != http.StatusOK {
		t.Fatalf("receipt: %d", code)
	}
	if d, _ := svc.DB.Deliveries().Get(t.Context(), smsID); d.Status != notify.StatusUndelivered || d.LastError != "absent subscriber" {
		t.Fatalf("after the undelivered receipt: %+v", d)
	}
}

// The providers files shipped and documented must stay valid as the code changes.
func TestShippedProviderConfigsParse(t *testing.T) {
	t.Parallel()
	f, err := service.LoadProviders("../deploy/providers.compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Build(t.Context(), service.Deps{})
	if err != nil || b.Names[notify.ChannelEmail] != "mailpit" {
		t.Fatalf("compose providers: %v %v", b.Names, err)
	}
	doc, err := os.ReadFile("../docs/providers.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 6 {
		t.Fatalf("%d yaml examples in docs/providers.md, want one per provider kind", len(blocks))
	}
	for i, blk := range blocks {
		blk, _, _ = strings.Cut(blk, "```")
		if !strings.HasPrefix(blk, "providers:") {
			blk = "providers:\n" + blk
		}
		blk = regexp.MustCompile(`\$\{[A-Z_]+\}`).ReplaceAllString(blk, "x")
		var pf service.ProvidersFile
		dec := yaml.NewDecoder(strings.NewReader(blk))
		dec.KnownFields(true)
		if err := dec.Decode(&pf); err != nil || len(pf.Providers) != 1 || pf.Providers[0].Kind == "" {
			t.Fatalf("docs/providers.md example %d: %v\n%s", i+1, err, blk)
		}
	}
}
