package notify

import (
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Phone is an E.164 phone number; it logs masked.
type Phone string

// LogValue masks all but the country prefix and the last 4 digits.
func (p Phone) LogValue() slog.Value { return slog.StringValue(MaskPhone(string(p))) }

// Email is an email address; it logs masked.
type Email string

// LogValue masks the local part.
func (e Email) LogValue() slog.Value { return slog.StringValue(MaskEmail(string(e))) }

// AccountNumber is a bank account number; it logs masked.
type AccountNumber string

// LogValue shows only the last 4 digits.
func (a AccountNumber) LogValue() slog.Value { return slog.StringValue(MaskAccount(string(a))) }

// Address is any delivery address (phone, email, openid, token, URL, recipient id);
// it logs masked by its shape.
type Address string

// LogValue masks the address by its shape.
func (a Address) LogValue() slog.Value { return slog.StringValue(MaskAddress(string(a))) }

// MaskAddress masks an address of any channel.
func MaskAddress(s string) string {
	switch {
	case strings.Contains(s, "://"):
		if i := strings.Index(s[strings.Index(s, "://")+3:], "/"); i >= 0 {
			return s[:strings.Index(s, "://")+3+i] + "/***"
		}
		return s
	case strings.Contains(s, "@"):
		return MaskEmail(s)
	case strings.HasPrefix(s, "+"):
		return MaskPhone(s)
	default:
		return maskTail(s, 4)
	}
}

// MaskPhone turns +8613800138000 into +86*******8000.
func MaskPhone(s string) string {
	if len(s) <= 7 {
		return strings.Repeat("*", len(s))
	}
	return s[:3] + strings.Repeat("*", len(s)-7) + s[len(s)-4:]
}

// MaskEmail turns alice@example.com into a***@example.com.
func MaskEmail(s string) string {
	at := strings.LastIndex(s, "@")
	if at <= 0 {
		return maskTail(s, 0)
	}
	r, _ := utf8.DecodeRuneInString(s)
	return string(r) + "***" + s[at:]
}

// MaskAccount turns 6222020200112233 into ****2233.
func MaskAccount(s string) string {
	if len(s) <= 4 {
		return strings.Repeat("*", len(s))
	}
	return "****" + s[len(s)-4:]
}

func maskTail(s string, keep int) string {
	if len(s) <= keep+2 {
		return strings.Repeat("*", len(s))
	}
	return strings.Repeat("*", 4) + s[len(s)-keep:]
}
