// Package smpp is an SMPP 3.4 client (ESME) for sending SMS to an SMSC: the PDU subset
// Herald needs (bind_transceiver, submit_sm, deliver_sm, enquire_link, unbind,
// generic_nack), long messages split with a UDH, UCS-2 for text outside ASCII, a window
// of outstanding submits, keep-alive, reconnection, and delivery receipts.
package smpp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Command ids.
const (
	GenericNack         uint32 = 0x80000000
	BindTransceiver     uint32 = 0x00000009
	BindTransceiverResp uint32 = 0x80000009
	SubmitSM            uint32 = 0x00000004
	SubmitSMResp        uint32 = 0x80000004
	DeliverSM           uint32 = 0x00000005
	DeliverSMResp       uint32 = 0x80000005
	Unbind              uint32 = 0x00000006
	UnbindResp          uint32 = 0x80000006
	EnquireLink         uint32 = 0x00000015
	EnquireLinkResp     uint32 = 0x80000015
)

// Command statuses Herald tells apart.
const (
	StatusOK          uint32 = 0x00000000
	StatusInvMsgLen   uint32 = 0x00000001
	StatusInvCmdID    uint32 = 0x00000003
	StatusSysErr      uint32 = 0x00000008
	StatusInvSrcAdr   uint32 = 0x0000000A
	StatusInvDstAdr   uint32 = 0x0000000B
	StatusBindFail    uint32 = 0x0000000D
	StatusInvPaswd    uint32 = 0x0000000E
	StatusMsgQFul     uint32 = 0x00000014
	StatusThrottled   uint32 = 0x00000058
	StatusDeliveryErr uint32 = 0x00000045 // ESME_RSUBMITFAIL
)

// MaxPDULen bounds a PDU Herald accepts (SMPP PDUs are small; this stops a bad length
// field from allocating gigabytes).
const MaxPDULen = 64 * 1024

// PDU is one SMPP protocol data unit: the header and the undecoded body.
type PDU struct {
	Command  uint32
	Status   uint32
	Sequence uint32
	Body     []byte
}

// Marshal encodes the PDU with its 16-byte header.
func (p PDU) Marshal() []byte {
	b := make([]byte, 16+len(p.Body))
	binary.BigEndian.PutUint32(b[0:], uint32(len(b))) //nolint:gosec // bounded by MaxPDULen in practice
	binary.BigEndian.PutUint32(b[4:], p.Command)
	binary.BigEndian.PutUint32(b[8:], p.Status)
	binary.BigEndian.PutUint32(b[12:], p.Sequence)
	copy(b[16:], p.Body)
	return b
}

// ErrBadPDU is returned for bytes that are not a valid PDU.
var ErrBadPDU = errors.New("smpp: malformed PDU")

// Unmarshal decodes one whole PDU (header included).
func Unmarshal(b []byte) (PDU, error) {
	if len(b) < 16 {
		return PDU{}, fmt.Errorf("%w: %d bytes", ErrBadPDU, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if n != uint32(len(b)) || n > MaxPDULen { //nolint:gosec // compared, not converted back
		return PDU{}, fmt.Errorf("%w: length field %d for %d bytes", ErrBadPDU, n, len(b))
	}
	return PDU{Command: binary.BigEndian.Uint32(b[4:]), Status: binary.BigEndian.Uint32(b[8:]),
		Sequence: binary.BigEndian.Uint32(b[12:]), Body: b[16:]}, nil
}

// writer builds PDU bodies.
type writer struct{ bytes.Buffer }

func (w *writer) cstring(s string) { w.WriteString(s); w.WriteByte(0) }
func (w *writer) u8(v byte)        { w.WriteByte(v) }

// reader decodes PDU bodies; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) cstring(limit int) string {
	if r.err != nil {
		return ""
	}
	i := bytes.IndexByte(r.b, 0)
	if i < 0 || i > limit {
		r.err = fmt.Errorf("%w: unterminated or overlong C-string", ErrBadPDU)
		return ""
	}
	s := string(r.b[:i])
	r.b = r.b[i+1:]
	return s
}

func (r *reader) u8() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.err = fmt.Errorf("%w: truncated body", ErrBadPDU)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated body", ErrBadPDU)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// Bind is the body of bind_transceiver.
type Bind struct {
	SystemID, Password, SystemType string
}

// Marshal encodes the body (interface version 3.4, no address range).
func (b Bind) Marshal() []byte {
	var w writer
	w.cstring(b.SystemID)
	w.cstring(b.Password)
	w.cstring(b.SystemType)
	w.u8(0x34) // interface_version
	w.u8(0)    // addr_ton
	w.u8(0)    // addr_npi
	w.cstring("")
	return w.Bytes()
}

// ParseBind decodes a bind body.
func ParseBind(body []byte) (Bind, error) {
	r := reader{b: body}
	b := Bind{SystemID: r.cstring(16), Password: r.cstring(9), SystemType: r.cstring(13)}
	r.u8()
	r.u8()
	r.u8()
	r.cstring(41)
	return b, r.err
}

// Submit is the body of submit_sm (and, with the same layout, deliver_sm).
type Submit struct {
	ServiceType        string
	SourceTON, SrcNPI  byte
	Source             string
	DestTON, DestNPI   byte
	Dest               string
	ESMClass           byte
	RegisteredDelivery byte
	DataCoding         byte
	ShortMessage       []byte
}

// ESM class bits.
const (
	ESMUDHI          byte = 0x40 // the short message starts with a user data header
	ESMDeliveryRecpt byte = 0x04 // (deliver_sm) the message is a delivery receipt
)

// Data codings.
const (
	CodingDefault byte = 0x00
	CodingUCS2    byte = 0x08
)

// Marshal encodes the body.
func (s Submit) Marshal() []byte {
	var w writer
	w.cstring(s.ServiceType)
	w.u8(s.SourceTON)
	w.u8(s.SrcNPI)
	w.cstring(s.Source)
	w.u8(s.DestTON)
	w.u8(s.DestNPI)
	w.cstring(s.Dest)
	w.u8(s.ESMClass)
	w.u8(0)       // protocol_id
	w.u8(0)       // priority_flag
	w.cstring("") // schedule_delivery_time
	w.cstring("") // validity_period
	w.u8(s.RegisteredDelivery)
	w.u8(0) // replace_if_present_flag
	w.u8(s.DataCoding)
	w.u8(0)                         // sm_default_msg_id
	w.u8(byte(len(s.ShortMessage))) //nolint:gosec // segments are at most 140 bytes
	w.Write(s.ShortMessage)
	return w.Bytes()
}

// ParseSubmit decodes a submit_sm or deliver_sm body (optional TLVs are ignored).
func ParseSubmit(body []byte) (Submit, error) {
	r := reader{b: body}
	var s Submit
	s.ServiceType = r.cstring(6)
	s.SourceTON, s.SrcNPI = r.u8(), r.u8()
	s.Source = r.cstring(21)
	s.DestTON, s.DestNPI = r.u8(), r.u8()
	s.Dest = r.cstring(21)
	s.ESMClass = r.u8()
	r.u8()
	r.u8()
	r.cstring(17)
	r.cstring(17)
	s.RegisteredDelivery = r.u8()
	r.u8()
	s.DataCoding = r.u8()
	r.u8()
	n := int(r.u8())
	s.ShortMessage = r.bytes(n)
	return s, r.err
}

// SubmitResp decodes the message id of a submit_sm_resp body.
func SubmitResp(body []byte) (string, error) {
	if len(body) == 0 {
		return "", nil // an error response may have no body
	}
	r := reader{b: body}
	id := r.cstring(65)
	return id, r.err
}
