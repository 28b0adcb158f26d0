package smpp

import (
	"errors"
	"strings"
	"unicode/utf16"
)

// Encode splits text into short messages: ASCII text in the SMSC default alphabet
// (160 characters, or 153 per part), anything else in UCS-2 (70, or 67 per part).
// Parts of a long message carry a concatenation header (UDH, 8-bit reference ref).
func Encode(text string, ref byte) (parts [][]byte, coding byte, err error) {
	ascii := true
	for i := 0; i < len(text); i++ {
		if text[i] >= 0x80 {
			ascii = false
			break
		}
	}
	var payload []byte
	single, per, unit := 160, 153, 1
	if ascii {
		coding, payload = CodingDefault, []byte(text)
	} else {
		coding, single, per, unit = CodingUCS2, 140, 134, 2
		for _, u := range utf16.Encode([]rune(text)) {
			payload = append(payload, byte(u>>8), byte(u&0xFF)) //nolint:gosec // the two halves of a UTF-16 unit
		}
	}
	if len(payload) <= single {
		return [][]byte{payload}, coding, nil
	}
	var chunks [][]byte
	for len(payload) > 0 {
		n := min(per, len(payload))
		// Never split a UTF-16 surrogate pair across parts.
		if unit == 2 && n < len(payload) && payload[n-2] >= 0xD8 && payload[n-2] <= 0xDB {
			n -= 2
		}
		chunks = append(chunks, payload[:n])
		payload = payload[n:]
	}
	if len(chunks) > 255 {
		return nil, 0, errors.New("smpp: message too long (more than 255 parts)")
	}
	for i, c := range chunks {
		udh := []byte{0x05, 0x00, 0x03, ref, byte(len(chunks)), byte(i + 1)} //nolint:gosec // at most 255 parts, checked above
		parts = append(parts, append(udh, c...))
	}
	return parts, coding, nil
}

// Decode is the inverse of Encode for one short message (without its UDH).
func Decode(b []byte, coding byte) string {
	if coding != CodingUCS2 {
		return string(b)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return string(utf16.Decode(u))
}

// StripUDH returns the short message without its user data header.
func StripUDH(b []byte) []byte {
	if len(b) == 0 || int(b[0])+1 > len(b) {
		return b
	}
	return b[int(b[0])+1:]
}

// Receipt is a delivery receipt in the SMPP 3.4 appendix B format:
// "id:… sub:… dlvr:… submit date:… done date:… stat:DELIVRD err:… text:…".
type Receipt struct {
	ID, Stat, Err string
}

// ParseReceipt reads a delivery receipt's text.
func ParseReceipt(s string) (Receipt, bool) {
	field := func(name string) string {
		i := strings.Index(s, name+":")
		if i < 0 {
			return ""
		}
		v := s[i+len(name)+1:]
		if j := strings.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		return v
	}
	r := Receipt{ID: field("id"), Stat: field("stat"), Err: field("err")}
	return r, r.ID != "" && r.Stat != ""
}
