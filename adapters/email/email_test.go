package email_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/email"
	"github.com/heraldhq/herald/internal/smtppeer"
	"github.com/heraldhq/herald/notify"
)

func message(to string) notify.Message {
	return notify.Message{DeliveryID: "dlv_0123456789abcdef", Channel: notify.ChannelEmail, Address: notify.Address(to),
		Content: notify.Content{Subject: "交易提醒 ¥1,234.56", Text: "您的账户支出 ¥1,234.56", HTML: "<p>您的账户支出 <b>¥1,234.56</b></p>"}}
}

func TestSMTP(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{email.TLSStartTLS, email.TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			peer := smtppeer.Start(t, mode == email.TLSImplicit)
			p, err := email.New(email.Config{Name: "smtp-test", Host: "127.0.0.1", Port: peer.Port, TLS: mode,
				Username: smtppeer.User, Password: smtppeer.Password, From: "Herald Bank <noreply@bank.example>",
				TLSConfig: peer.ClientTLS, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			r, err := p.Send(ctx, message("alice@example.com"))
			if err != nil {
				t.Fatal(err)
			}
			if r.ProviderMessageID != "<dlv_0123456789abcdef@bank.example>" || r.Provider != "smtp-test" {
				t.Fatalf("receipt %+v", r)
			}
			// A second send reuses the connection.
			if _, err := p.Send(ctx, message("bob@example.com")); err != nil {
				t.Fatal(err)
			}
			got, conns := peer.Messages(), peer.Conns()
			if len(got) != 2 || conns != 1 {
				t.Fatalf("%d messages over %d connections, want 2 over 1", len(got), conns)
			}
			for _, want := range []string{"Message-ID: <dlv_0123456789abcdef@bank.example>", "multipart/alternative",
				"text/plain", "text/html", "=?UTF-8?", "From: \"Herald Bank\" <noreply@bank.example>"} {
				if !strings.Contains(got[0], want) {
					t.Fatalf("message lacks %q:\n%s", want, got[0])
				}
			}

			_, err = p.Send(ctx, message("rejected@example.com"))
			if notify.ClassOf(err) != notify.ClassPermanent {
				t.Fatalf("550: %v (%s), want permanent", err, notify.ClassOf(err))
			}
			_, err = p.Send(ctx, message("busy@example.com"))
			if err == nil || notify.ClassOf(err) != notify.ClassTransient {
				t.Fatalf("451: %v, want transient", err)
			}
			// After failures the provider redials and goes on.
			if _, err := p.Send(ctx, message("carol@example.com")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSMTPWrongPasswordAndNoServer(t *testing.T) {
	t.Parallel()
	peer := smtppeer.Start(t, false)
	cliTLS := peer.ClientTLS
	p, _ := email.New(email.Config{Host: "127.0.0.1", Port: peer.Port, Username: smtppeer.User, Password: "wrong",
		From: "noreply@bank.example", TLSConfig: cliTLS, Timeout: 2 * time.Second})
	if _, err := p.Send(context.Background(), message("a@example.com")); err == nil {
		t.Fatal("wrong password accepted")
	}
	p, _ = email.New(email.Config{Host: "127.0.0.1", Port: 1, From: "noreply@bank.example", TLSConfig: cliTLS, Timeout: time.Second})
	if _, err := p.Send(context.Background(), message("a@example.com")); err == nil || notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("unreachable server: %v, want transient", err)
	}
}
