package httpgw_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sms/httpgw"
	"github.com/heraldhq/herald/notify"
)

func TestGatewayAnswersAreClassified(t *testing.T) {
	t.Parallel()
	var form url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		form = r.PostForm
		switch r.PostForm.Get("to") {
		case "+8613800000400":
			http.Error(w, `{"error":"invalid number"}`, http.StatusBadRequest)
		case "+8613800000503":
			w.Header().Set("Retry-After", "3")
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte(`{"message_id": 42}`))
		}
	}))
	defer srv.Close()
	p, err := httpgw.New(httpgw.Config{Name: "gw", URL: srv.URL, Format: "form", Extra: map[string]string{"account": "A1"}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(to string) (notify.Receipt, error) {
		return p.Send(context.Background(), notify.Message{DeliveryID: "dlv_9", Address: notify.Address(to), Content: notify.Content{Text: "您好"}})
	}
	r, err := send("+8613800138000")
	// Without a secret the gateway cannot report (ParseReports), so the id is not kept.
	if err != nil || r.ProviderMessageID != "42" || r.Reports || form.Get("reference") != "dlv_9" || form.Get("text") != "您好" || form.Get("account") != "A1" {
		t.Fatalf("accepted: %+v %v, form %v", r, err, form)
	}
	if _, err := send("+8613800000400"); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("400: %v", err)
	}
	if _, err := send("+8613800000503"); notify.ClassOf(err) != notify.ClassTransient || notify.AfterOf(err) != 3*time.Second {
		t.Fatalf("503: %v", err)
	}
	down, _ := httpgw.New(httpgw.Config{Name: "down", URL: "http://127.0.0.1:1/send", Timeout: time.Second})
	if _, err := down.Send(context.Background(), notify.Message{DeliveryID: "d", Address: "+8613800138000"}); err == nil ||
		notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestReportsMustBeSignedAndFresh(t *testing.T) {
	t.Parallel()
	p, _ := httpgw.New(httpgw.Config{Name: "gw", URL: "https://gw.example/send", Secret: "s-0123456789"})
	body := []byte(`{"reference":"dlv_1","status":"EXPIRED"}`)
	h := func(ts int64, sig string) http.Header {
		return http.Header{httpgw.HeaderTimestamp: {strconv.FormatInt(ts, 10)}, httpgw.HeaderSignature: {sig}}
	}
	now := time.Now().Unix()
	rs, err := p.ParseReports(h(now, httpgw.Sign("s-0123456789", now, body)), body)
	if err != nil || len(rs) != 1 || rs[0].Delivered || rs[0].Reference != "dlv_1" || rs[0].Reason != "gateway status EXPIRED" {
		t.Fatalf("%+v %v", rs, err)
	}
	if _, err := p.ParseReports(h(now, "00"), body); err == nil {
		t.Fatal("bad signature accepted")
	}
	old := now - 3600
	if _, err := p.ParseReports(h(old, httpgw.Sign("s-0123456789", old, body)), body); err == nil {
		t.Fatal("hour-old report accepted")
	}
	unsigned, _ := httpgw.New(httpgw.Config{Name: "u", URL: "https://gw.example/send"})
	if _, err := unsigned.ParseReports(http.Header{}, body); err == nil {
		t.Fatal("a gateway without a secret must not take reports")
	}
}
