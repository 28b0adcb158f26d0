package templates

import (
	"strings"

	"github.com/shopspring/decimal"
)

// zhSymbols are the currency symbols used in zh-CN text; other currencies and other
// locales use the ISO code, which no reader can misread.
var zhSymbols = map[string]string{"CNY": "¥", "HKD": "HK$", "USD": "US$", "EUR": "€", "GBP": "£", "JPY": "JP¥"}

// minorUnits is the number of decimals per currency (ISO 4217); 2 when absent.
var minorUnits = map[string]int32{"JPY": 0, "KRW": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}

// FormatMoney formats an amount for a locale: ¥1,234.56 in zh-CN, CNY 1,234.56 in en.
// It rounds half away from zero to the currency's minor unit; it never uses floats.
func FormatMoney(d decimal.Decimal, currency, locale string) string {
	places, ok := minorUnits[currency]
	if !ok {
		places = 2
	}
	neg := d.IsNegative()
	s := d.Abs().StringFixed(places)
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if sym, ok := zhSymbols[currency]; ok && locale == "zh-CN" {
		b.WriteString(sym)
	} else {
		b.WriteString(currency)
		b.WriteByte(' ')
	}
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	b.WriteString(frac)
	return b.String()
}
