package smpp

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/notify"
)

// ReportSink receives delivery receipts.
type ReportSink interface {
	RecordReport(ctx context.Context, provider string, r notify.Report) (bool, error)
}

// Config of an SMPP connection.
type Config struct {
	// Name identifies the provider in deliveries and receipts.
	Name string
	// Addr is the SMSC's host:port.
	Addr string
	// TLS, when set, wraps the connection (many SMSCs expect a VPN or stunnel instead).
	TLS                            *tls.Config
	SystemID, Password, SystemType string
	// Source is the sender address (a short code or an alphanumeric id), with its
	// TON/NPI (defaults 0/0; alphanumeric ids usually need TON 5).
	Source            string
	SourceTON, SrcNPI byte
	// Window is how many submits may await their response at once. Default 10.
	Window int
	// EnquireLink is the keep-alive interval. Default 30s.
	EnquireLink time.Duration
	// Timeout bounds dialling, binding and each response. Default 10s.
	Timeout time.Duration
	// Reports receives delivery receipts (deliver_sm); nil ignores them.
	Reports ReportSink
	Log     *slog.Logger
}

// Client is an ESME bound as transceiver. It connects on the first send, keeps the
// session alive and reconnects with backoff after a failure.
type Client struct {
	cfg    Config
	window chan struct{}
	ref    atomic.Uint32

	mu      sync.Mutex
	sess    *session
	backoff time.Duration
	retryAt time.Time
	closed  bool
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Name == "" || cfg.Addr == "" || cfg.SystemID == "" {
		return nil, errors.New("smpp: name, addr and system_id are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = 10
	}
	if cfg.EnquireLink <= 0 {
		cfg.EnquireLink = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, window: make(chan struct{}, cfg.Window)}, nil
}

// session is one bound connection.
type session struct {
	c       *Client
	conn    net.Conn
	wmu     sync.Mutex
	seq     atomic.Uint32
	pmu     sync.Mutex
	pending map[uint32]chan PDU
	dead    chan struct{}
	err     error
}

var errNotBound = errors.New("smpp: not connected")

// current returns a bound session, dialling one if needed (not during backoff).
func (c *Client) current(ctx context.Context) (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("smpp: client closed")
	}
	if c.sess != nil {
		select {
		case <-c.sess.dead:
			c.sess = nil
		default:
			return c.sess, nil
		}
	}
	if time.Now().Before(c.retryAt) {
		return nil, notify.RetryAfter(fmt.Errorf("%w to %s: reconnecting", errNotBound, c.cfg.Addr), time.Until(c.retryAt))
	}
	s, err := c.dial(ctx)
	if err != nil {
		c.backoff = min(max(2*c.backoff, time.Second), 30*time.Second)
		c.retryAt = time.Now().Add(c.backoff)
		return nil, err
	}
	c.backoff, c.sess = 0, s
	return s, nil
}

func (c *Client) dial(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	d := &net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smpp: connecting to %s: %w", c.cfg.Addr, err)
	}
	if c.cfg.TLS != nil {
		tc := tls.Client(conn, c.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("smpp: TLS with %s: %w", c.cfg.Addr, err)
		}
		conn = tc
	}
	s := &session{c: c, conn: conn, pending: map[uint32]chan PDU{}, dead: make(chan struct{})}
	go s.read()
	resp, err := s.request(ctx, BindTransceiver, Bind{SystemID: c.cfg.SystemID, Password: c.cfg.Password, SystemType: c.cfg.SystemType}.Marshal())
	if err == nil && resp.Status != StatusOK {
		err = fmt.Errorf("smpp: bind refused with status 0x%08X", resp.Status)
	}
	if err != nil {
		s.close(err)
		return nil, err
	}
	go s.keepAlive() //nolint:gosec // the session outlives the send that opened it
	c.cfg.Log.Info("smpp bound", "provider", c.cfg.Name, "smsc", c.cfg.Addr)
	return s, nil
}

func (s *session) write(p PDU) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.Timeout))
	_, err := s.conn.Write(p.Marshal())
	return err
}

// request sends a PDU and waits for its response.
func (s *session) request(ctx context.Context, cmd uint32, body []byte) (PDU, error) {
	seq := s.seq.Add(1)
	ch := make(chan PDU, 1)
	s.pmu.Lock()
	s.pending[seq] = ch
	s.pmu.Unlock()
	defer func() {
		s.pmu.Lock()
		delete(s.pending, seq)
		s.pmu.Unlock()
	}()
	if err := s.write(PDU{Command: cmd, Sequence: seq, Body: body}); err != nil {
		s.close(err)
		return PDU{}, fmt.Errorf("smpp: writing: %w", err)
	}
	t := time.NewTimer(s.c.cfg.Timeout)
	defer t.Stop()
	select {
	case p := <-ch:
		return p, nil
	case <-s.dead:
		return PDU{}, fmt.Errorf("smpp: connection lost: %w", s.err)
	case <-t.C:
		return PDU{}, fmt.Errorf("smpp: no response to 0x%08X within %s", cmd, s.c.cfg.Timeout)
	case <-ctx.Done():
		return PDU{}, ctx.Err()
	}
}

func (s *session) close(err error) {
	s.pmu.Lock()
	select {
	case <-s.dead:
	default:
		s.err = err
		close(s.dead)
	}
	s.pmu.Unlock()
	_ = s.conn.Close()
}

// read dispatches incoming PDUs until the connection fails.
func (s *session) read() {
	r := bufio.NewReader(s.conn)
	for {
		p, err := readPDU(r)
		if err != nil {
			s.close(err)
			return
		}
		switch p.Command {
		case DeliverSM:
			s.deliver(p)
		case EnquireLink:
			_ = s.write(PDU{Command: EnquireLinkResp, Sequence: p.Sequence})
		case Unbind:
			_ = s.write(PDU{Command: UnbindResp, Sequence: p.Sequence})
			s.close(errors.New("unbound by the SMSC"))
			return
		default:
			if p.Command&0x80000000 == 0 { // a request Herald does not serve
				_ = s.write(PDU{Command: GenericNack, Status: StatusInvCmdID, Sequence: p.Sequence})
				continue
			}
			s.pmu.Lock()
			ch := s.pending[p.Sequence]
			s.pmu.Unlock()
			if ch != nil {
				ch <- p
			}
		}
	}
}

// readPDU reads one length-prefixed PDU.
func readPDU(r io.Reader) (PDU, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return PDU{}, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n < 16 || n > MaxPDULen {
		return PDU{}, fmt.Errorf("%w: length %d", ErrBadPDU, n)
	}
	b := make([]byte, n)
	copy(b, head[:])
	if _, err := io.ReadFull(r, b[4:]); err != nil {
		return PDU{}, err
	}
	return Unmarshal(b)
}

// deliver handles deliver_sm: delivery receipts go to the report sink; the PDU is
// acknowledged either way (a receipt Herald cannot record is logged, not refused,
// or the SMSC would redeliver it forever).
func (s *session) deliver(p PDU) {
	status := StatusOK
	d, err := ParseSubmit(p.Body)
	if err != nil {
		status = StatusInvMsgLen
	} else if d.ESMClass&ESMDeliveryRecpt != 0 && s.c.cfg.Reports != nil {
		if rc, ok := ParseReceipt(Decode(d.ShortMessage, d.DataCoding)); ok {
			rep := notify.Report{MessageID: rc.ID, Delivered: rc.Stat == "DELIVRD"}
			if !rep.Delivered {
				rep.Reason = "SMSC status " + rc.Stat + " err " + rc.Err
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.Timeout)
			if _, err := s.c.cfg.Reports.RecordReport(ctx, s.c.cfg.Name, rep); err != nil {
				s.c.cfg.Log.Warn("smpp receipt not recorded", "provider", s.c.cfg.Name, "error", err)
			}
			cancel()
		}
	}
	_ = s.write(PDU{Command: DeliverSMResp, Status: status, Sequence: p.Sequence, Body: []byte{0}})
}

func (s *session) keepAlive() {
	t := time.NewTicker(s.c.cfg.EnquireLink)
	defer t.Stop()
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
			if _, err := s.request(context.Background(), EnquireLink, nil); err != nil {
				s.close(fmt.Errorf("keep-alive: %w", err))
				return
			}
		}
	}
}

// Send implements handlers.Provider: one submit_sm per part, a delivery receipt
// requested on the last; the receipt's id is the last part's message id.
func (c *Client) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	parts, coding, err := Encode(m.Content.Text, byte(c.ref.Add(1)%256)) //nolint:gosec // an 8-bit reference that wraps
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	s, err := c.current(ctx)
	if err != nil {
		return notify.Receipt{}, err
	}
	var id string
	for i, part := range parts {
		sub := Submit{SourceTON: c.cfg.SourceTON, SrcNPI: c.cfg.SrcNPI, Source: c.cfg.Source, DestTON: 1, DestNPI: 1,
			Dest: string(m.Address), DataCoding: coding, ShortMessage: part}
		if len(sub.Dest) > 0 && sub.Dest[0] == '+' {
			sub.Dest = sub.Dest[1:] // international TON carries no '+'
		}
		if len(parts) > 1 {
			sub.ESMClass = ESMUDHI
		}
		if i == len(parts)-1 {
			sub.RegisteredDelivery = 1
		}
		select {
		case c.window <- struct{}{}:
		case <-ctx.Done():
			return notify.Receipt{}, ctx.Err()
		}
		resp, err := s.request(ctx, SubmitSM, sub.Marshal())
		<-c.window
		if err != nil {
			return notify.Receipt{}, err
		}
		if resp.Status != StatusOK {
			return notify.Receipt{}, classify(resp.Status, i, len(parts))
		}
		if id, err = SubmitResp(resp.Body); err != nil {
			return notify.Receipt{}, err
		}
	}
	return notify.Receipt{Provider: c.cfg.Name, ProviderMessageID: id, Reports: c.cfg.Reports != nil && id != ""}, nil
}

func classify(status uint32, part, parts int) error {
	err := fmt.Errorf("smpp: submit_sm of part %d/%d refused with status 0x%08X", part+1, parts, status)
	switch status {
	case StatusThrottled, StatusMsgQFul:
		return notify.RetryAfter(err, time.Second)
	case StatusSysErr, StatusDeliveryErr:
		return err
	default: // invalid destination, source, message length…
		return notify.Permanent(err)
	}
}

// Close unbinds and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = s.request(ctx, Unbind, nil)
	s.close(errors.New("closed"))
	return nil
}
