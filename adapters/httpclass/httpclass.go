// Package httpclass classifies HTTP answers of providers: 2xx accepted; 408, 425, 429
// and 5xx transient (429 and 503 with their Retry-After); other 4xx permanent; a
// failed request transient.
package httpclass

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/notify"
)

// Check returns nil for a 2xx answer and a classified error otherwise. It reads at most
// 512 bytes of an error body into the message.
func Check(provider string, resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err := fmt.Errorf("%s answered %s: %s", provider, resp.Status, b)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return notify.RetryAfter(err, RetryAfter(resp.Header.Get("Retry-After")))
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooEarly || resp.StatusCode >= 500:
		return err
	default:
		return notify.Permanent(err)
	}
}

// DefaultTimeout bounds one provider request when the configuration does not.
const DefaultTimeout = 10 * time.Second

// Defaults returns the timeout, DefaultTimeout when unset, and the client, a plain
// one when unset: the settings every HTTP provider takes.
func Defaults(timeout time.Duration, client *http.Client) (time.Duration, *http.Client) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if client == nil {
		client = &http.Client{}
	}
	return timeout, client
}

// RetryAfter parses a Retry-After header (seconds or an HTTP date); 0 when absent.
func RetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
