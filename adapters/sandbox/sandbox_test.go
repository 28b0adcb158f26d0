package sandbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

type recorder struct {
	n   int
	ids map[string]int // message id -> sends recorded under it
}

func (r *recorder) Add(_ context.Context, s sqlstore.SandboxSend) error {
	r.n++
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	r.ids[s.MessageID]++
	return nil
}

func TestFaultSpecParse(t *testing.T) {
	t.Parallel()
	chans := []notify.Channel{notify.ChannelSMS, notify.ChannelEmail}
	f, lat, err := FaultSpec{FailRate: "0.3", PermanentFailRate: "sms=0.1", Latency: "email=20ms",
		Outages: []string{"sms:5s+30s"}}.Parse(chans)
	if err != nil {
		t.Fatal(err)
	}
	if f[notify.ChannelSMS].FailRate != 0.3 || f[notify.ChannelEmail].FailRate != 0.3 || f[notify.ChannelSMS].PermanentFailRate != 0.1 ||
		f[notify.ChannelEmail].PermanentFailRate != 0 || lat[notify.ChannelEmail] != 20*time.Millisecond || lat[notify.ChannelSMS] != 0 ||
		len(f[notify.ChannelSMS].Outages) != 1 || f[notify.ChannelSMS].Outages[0] != (Outage{5 * time.Second, 30 * time.Second}) {
		t.Fatalf("parsed %+v %v", f, lat)
	}
	for _, bad := range []FaultSpec{{FailRate: "1.5"}, {FailRate: "fax=0.1"}, {Latency: "-1s"},
		{Outages: []string{"sms:5s"}}, {FailRate: "0.6", PermanentFailRate: "0.6"}} {
		if _, _, err := bad.Parse(chans); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestInjectedFaults(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := New(Config{Recorder: rec, Faults: Faults{FailRate: 0.3, PermanentFailRate: 0.1}}, log)
	if err != nil {
		t.Fatal(err)
	}
	var transient, permanent int
	const n = 4000
	for i := 0; i < n; i++ {
		r, err := p.Send(context.Background(), notify.Message{DeliveryID: "d", Channel: notify.ChannelSMS, Address: "+8613800138000"})
		switch {
		case err == nil:
			// The receipt names the recorded send, and every send has an id of its own.
			if !strings.HasPrefix(r.ProviderMessageID, "sbx-") || rec.ids[r.ProviderMessageID] != 1 || len(rec.ids) != rec.n {
				t.Fatalf("receipt %q: recorded %d times; %d ids for %d sends", r.ProviderMessageID, rec.ids[r.ProviderMessageID], len(rec.ids), rec.n)
			}
		case notify.ClassOf(err) == notify.ClassPermanent:
			permanent++
		case errors.Is(err, ErrInjected):
			transient++
		}
	}
	if transient < n*25/100 || transient > n*35/100 || permanent < n*7/100 || permanent > n*13/100 || rec.n != n-transient-permanent {
		t.Fatalf("transient %d, permanent %d, recorded %d of %d", transient, permanent, rec.n, n)
	}
	down, _ := New(Config{Recorder: rec, Faults: Faults{Outages: []Outage{{0, time.Hour}}}}, log)
	if _, err := down.Send(context.Background(), notify.Message{Channel: notify.ChannelSMS}); !errors.Is(err, ErrInjected) ||
		notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("during an outage: %v", err)
	}
}
