package smpp_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sms/smpp"
	"github.com/heraldhq/herald/notify"
)

// smsc is an SMSC simulator: it binds ESMEs with one password, answers submit_sm with
// message ids (refusing destination 8613800000000 as invalid and throttling
// 8613800000058 once), sends a delivery receipt for each submit that asks for one, and
// answers enquire_link.
type smsc struct {
	ln        net.Listener
	mu        sync.Mutex
	submits   []smpp.Submit
	binds     int
	enquires  int
	throttled bool
	conns     []net.Conn
}

func startSMSC(t *testing.T) *smsc {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smsc{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); s.dropAll() })
	return s
}

// dropAll cuts every connection (an SMSC restart).
func (s *smsc) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func (s *smsc) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var wmu sync.Mutex
	write := func(p smpp.PDU) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = c.Write(p.Marshal())
	}
	seq := uint32(1000)
	for {
		var head [4]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(head[:]))
		copy(b, head[:])
		if _, err := io.ReadFull(r, b[4:]); err != nil {
			return
		}
		p, err := smpp.Unmarshal(b)
		if err != nil {
			return
		}
		switch p.Command {
		case smpp.BindTransceiver:
			bind, _ := smpp.ParseBind(p.Body)
			status := smpp.StatusOK
			if bind.SystemID != "herald" || bind.Password != "pw" {
				status = smpp.StatusInvPaswd
			}
			s.mu.Lock()
			s.binds++
			s.mu.Unlock()
			write(smpp.PDU{Command: smpp.BindTransceiverResp, Status: status, Sequence: p.Sequence, Body: []byte("SMSC\x00")})
		case smpp.EnquireLink:
			s.mu.Lock()
			s.enquires++
			s.mu.Unlock()
			write(smpp.PDU{Command: smpp.EnquireLinkResp, Sequence: p.Sequence})
		case smpp.Unbind:
			write(smpp.PDU{Command: smpp.UnbindResp, Sequence: p.Sequence})
			return
		case smpp.SubmitSM:
			sub, err := smpp.ParseSubmit(p.Body)
			s.mu.Lock()
			status := smpp.StatusOK
			switch {
			case err != nil:
				status = smpp.StatusInvMsgLen
			case sub.Dest == "8613800000000":
				status = smpp.StatusInvDstAdr
			case sub.Dest == "8613800000058" && !s.throttled:
				s.throttled, status = true, smpp.StatusThrottled
			default:
				s.submits = append(s.submits, sub)
			}
			id := fmt.Sprintf("M%04d", len(s.submits))
			s.mu.Unlock()
			if status != smpp.StatusOK {
				write(smpp.PDU{Command: smpp.SubmitSMResp, Status: status, Sequence: p.Sequence})
				continue
			}
			write(smpp.PDU{Command: smpp.SubmitSMResp, Sequence: p.Sequence, Body: append([]byte(id), 0)})
			if sub.RegisteredDelivery == 1 {
				stat := "DELIVRD"
				if sub.Dest == "8613800000404" {
					stat = "UNDELIV"
				}
				seq++
				rc := smpp.Submit{Source: sub.Dest, Dest: sub.Source, ESMClass: smpp.ESMDeliveryRecpt,
					ShortMessage: []byte("id:" + id + " sub:001 dlvr:001 submit date:2611221000 done date:2611221000 stat:" + stat + " err:000 text:")}
				write(smpp.PDU{Command: smpp.DeliverSM, Sequence: seq, Body: rc.Marshal()})
			}
		}
	}
}

type reports struct {
	mu  sync.Mutex
	got []notify.Report
}

func (r *reports) RecordReport(_ context.Context, provider string, rep notify.Report) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if provider == "smsc1" {
		r.got = append(r.got, rep)
	}
	return true, nil
}

func (r *reports) wait(t *testing.T, n int) []notify.Report {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		got := append([]notify.Report(nil), r.got...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d receipts, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sms(to, text string) notify.Message {
	return notify.Message{DeliveryID: "dlv_" + to, Channel: notify.ChannelSMS, Address: notify.Address(to), Content: notify.Content{Text: text}}
}

func TestSMPP(t *testing.T) {
	t.Parallel()
	sc := startSMSC(t)
	rep := &reports{}
	c, err := smpp.New(smpp.Config{Name: "smsc1", Addr: sc.ln.Addr().String(), SystemID: "herald", Password: "pw",
		Source: "95588", Reports: rep, EnquireLink: 100 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	r, err := c.Send(ctx, sms("+8613800138000", "Your card ending 1234 was charged CNY 1,234.56"))
	if err != nil || r.ProviderMessageID != "M0001" || r.Provider != "smsc1" || !r.Reports {
		t.Fatalf("send: %+v %v", r, err)
	}
	// A long Chinese message: UCS-2, split into parts with a concatenation header.
	long := strings.Repeat("您的账户于11月22日支出人民币1,234.56元。", 5)
	r, err = c.Send(ctx, sms("+8613800138001", long))
	if err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	parts := sc.submits[1:]
	sc.mu.Unlock()
	if len(parts) < 2 {
		t.Fatalf("%d parts for %d characters", len(parts), len([]rune(long)))
	}
	var joined string
	for i, p := range parts {
		if p.DataCoding != smpp.CodingUCS2 || p.ESMClass&smpp.ESMUDHI == 0 || p.ShortMessage[4] != byte(len(parts)) ||
			p.ShortMessage[5] != byte(i+1) || len(p.ShortMessage) > 140 || p.Dest != "8613800138001" {
			t.Fatalf("part %d: %+v", i, p)
		}
		joined += smpp.Decode(smpp.StripUDH(p.ShortMessage), p.DataCoding)
	}
	if joined != long || r.ProviderMessageID != fmt.Sprintf("M%04d", len(parts)+1) {
		t.Fatalf("reassembled %q, id %s", joined, r.ProviderMessageID)
	}
	got := rep.wait(t, 2)
	if got[0].MessageID != "M0001" || !got[0].Delivered {
		t.Fatalf("receipts %+v", got)
	}

	if _, err := c.Send(ctx, sms("+8613800000000", "x")); notify.ClassOf(err) != notify.ClassPermanent {
		t.Fatalf("invalid destination: %v", err)
	}
	if _, err := c.Send(ctx, sms("+8613800000058", "x")); err == nil || notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("throttled: %v", err)
	}
	if _, err := c.Send(ctx, sms("+8613800000404", "x")); err != nil {
		t.Fatal(err)
	}
	got = rep.wait(t, 3)
	if last := got[len(got)-1]; last.Delivered || !strings.Contains(last.Reason, "UNDELIV") {
		t.Fatalf("undelivered receipt: %+v", last)
	}
	time.Sleep(300 * time.Millisecond)
	sc.mu.Lock()
	enquires := sc.enquires
	sc.mu.Unlock()
	if enquires < 2 {
		t.Fatalf("%d enquire_link in 300ms at a 100ms interval", enquires)
	}

	// The SMSC drops the connection: the next sends fail transiently, then the client
	// reconnects (after its backoff) and sends again.
	sc.dropAll()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Send(ctx, sms("+8613800138002", "after the restart"))
		if err == nil {
			break
		}
		if notify.ClassOf(err) != notify.ClassTransient || time.Now().After(deadline) {
			t.Fatalf("after the SMSC dropped us: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sc.mu.Lock()
	binds := sc.binds
	sc.mu.Unlock()
	if binds != 2 {
		t.Fatalf("%d binds, want 2", binds)
	}
}

func TestSMPPBindRefused(t *testing.T) {
	t.Parallel()
	sc := startSMSC(t)
	c, _ := smpp.New(smpp.Config{Name: "smsc1", Addr: sc.ln.Addr().String(), SystemID: "herald", Password: "wrong", Timeout: time.Second})
	if _, err := c.Send(context.Background(), sms("+8613800138000", "x")); err == nil || !strings.Contains(err.Error(), "bind refused") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text          string
		parts, coding int
	}{
		{strings.Repeat("a", 160), 1, 0}, {strings.Repeat("a", 161), 2, 0}, {strings.Repeat("中", 70), 1, 8},
		{strings.Repeat("中", 71), 2, 8}, {strings.Repeat("😀", 40), 2, 8}, // surrogate pairs, 80 UTF-16 units
	} {
		parts, coding, err := smpp.Encode(tc.text, 7)
		if err != nil || len(parts) != tc.parts || int(coding) != tc.coding {
			t.Fatalf("%d runes: %d parts coding %d (%v)", len([]rune(tc.text)), len(parts), coding, err)
		}
		var back string
		for _, p := range parts {
			if len(parts) > 1 {
				p = smpp.StripUDH(p)
			}
			back += smpp.Decode(p, coding)
		}
		if back != tc.text {
			t.Fatalf("round trip of %d runes lost text", len([]rune(tc.text)))
		}
	}
}

// FuzzUnmarshal: no input makes the PDU decoders panic or accept a wrong length.
func FuzzUnmarshal(f *testing.F) {
	f.Add(smpp.PDU{Command: smpp.SubmitSM, Sequence: 1, Body: smpp.Submit{Dest: "8613800138000", ShortMessage: []byte("hi")}.Marshal()}.Marshal())
	f.Add(smpp.PDU{Command: smpp.BindTransceiver, Sequence: 2, Body: smpp.Bind{SystemID: "herald", Password: "pw"}.Marshal()}.Marshal())
	f.Add([]byte{0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := smpp.Unmarshal(b)
		if err != nil {
			return
		}
		if int(binary.BigEndian.Uint32(b)) != len(b) || len(p.Body) != len(b)-16 {
			t.Fatalf("accepted a PDU whose length field disagrees")
		}
		if !bytesEqual(p.Marshal(), b) {
			t.Fatal("re-marshalled PDU differs")
		}
		_, _ = smpp.ParseSubmit(p.Body)
		_, _ = smpp.ParseBind(p.Body)
		_, _ = smpp.SubmitResp(p.Body)
		_, _ = smpp.ParseReceipt(string(p.Body))
	})
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
