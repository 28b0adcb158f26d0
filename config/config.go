// Package config is Herald's one typed configuration: command-line flags over HERALD_*
// environment variables over an optional YAML file over defaults, validated at start.
package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/adapters/sandbox"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
)

// Config is everything a running Herald needs. The struct tags drive the CLI (kong):
// every field is a flag, an environment variable and a YAML key (the flag name).
type Config struct {
	DB         string `name:"db" env:"HERALD_DB_URL" default:"sqlite://herald.db" help:"Database URL (sqlite://path/to/file.db)."`
	DBMaxConns int    `name:"db-max-conns" env:"HERALD_DB_MAX_CONNS" default:"16" help:"Connection pool size on PostgreSQL and MySQL."`
	// DBCommitters is how many group-commit transactions run at once on PostgreSQL and
	// MySQL (0: 2, at most db-max-conns/2); SQLite has one writer.
	DBCommitters int      `name:"db-committers" env:"HERALD_DB_COMMITTERS" help:"Group-commit transactions at once on PostgreSQL and MySQL (0: 2, at most db-max-conns/2); fewer make larger groups: less database CPU, but they can fall behind a burst."`
	Addr         string   `name:"addr" env:"HERALD_HTTP_ADDR" default:"127.0.0.1:8080" help:"HTTP listen address."`
	APIKeys      []string `name:"api-keys" env:"HERALD_API_KEYS" sep:"," help:"API keys accepted as 'Authorization: Bearer <key>' (comma-separated). Required unless listening on loopback."`
	Providers    string   `name:"providers" env:"HERALD_PROVIDERS" help:"YAML file naming the real providers (docs/providers.md); channels without one use the sandbox."`
	Channels     []string `name:"channels" env:"HERALD_CHANNELS" sep:"," default:"sms,email,inapp,wechat,push,webhook" help:"Channels to deliver."`

	KafkaBrokers           []string `name:"kafka-brokers" env:"HERALD_KAFKA_BROKERS" sep:"," help:"Kafka brokers (host:port, comma-separated); turns on Kafka mode."`
	KafkaTopicPrefix       string   `name:"kafka-topic-prefix" env:"HERALD_KAFKA_TOPIC_PREFIX" default:"herald." help:"Prefix of Herald's Kafka topics."`
	KafkaConsumerGroup     string   `name:"kafka-consumer-group" env:"HERALD_KAFKA_CONSUMER_GROUP" default:"herald" help:"Prefix of the Kafka consumer groups of Herald's instances (one group per topic: PREFIX.events, PREFIX.deliveries.sms, ...)."`
	KafkaPartitions        int32    `name:"kafka-partitions" env:"HERALD_KAFKA_PARTITIONS" default:"4" help:"Partitions of the Kafka topics Herald creates."`
	KafkaReplicationFactor int16    `name:"kafka-replication-factor" env:"HERALD_KAFKA_REPLICATION_FACTOR" default:"1" help:"Replication factor of the Kafka topics Herald creates (3 in production)."`

	Bank            string `name:"bank-name" env:"HERALD_BANK_NAME" default:"Herald Bank" help:"Sender name shown in messages."`
	DefaultLocale   string `name:"default-locale" env:"HERALD_DEFAULT_LOCALE" default:"zh-CN" help:"Locale when neither event nor recipient has one (zh-CN, en)."`
	DefaultTimeZone string `name:"default-time-zone" env:"HERALD_DEFAULT_TIME_ZONE" default:"Asia/Shanghai" help:"Time zone when the recipient has none."`

	OTPTTL time.Duration `name:"otp-ttl" env:"HERALD_OTP_TTL" default:"5m" help:"One-time passwords not sent within this time after the event expire (status expired)."`

	PollInterval   time.Duration `name:"poll-interval" env:"HERALD_POLL_INTERVAL" default:"10ms" help:"How long an idle SQL subscriber waits before polling again."`
	BatchSize      int           `name:"batch-size" env:"HERALD_BATCH_SIZE" default:"250" help:"Rows one SQL subscriber query reads."`
	Concurrency    int           `name:"concurrency" env:"HERALD_CONCURRENCY" default:"250" help:"Messages of one SQL topic (Kafka: of one partition) handled at once (one at a time per account or recipient); their writes are committed together. 1 handles one message at a time."`
	RetainConsumed time.Duration `name:"retain-consumed" env:"HERALD_RETAIN_CONSUMED" default:"1h" help:"SQL topic rows (the outbox included) that every consumer group has consumed are deleted once older than this, checked every minute (every retain-consumed when shorter, at least every second); 0 keeps them. Notifications and deliveries are not affected (see retain-records)."`
	RetainRecords  time.Duration `name:"retain-records" env:"HERALD_RETAIN_RECORDS" default:"0" help:"Notification records whose deliveries have all ended (notification, deliveries, sandbox sends) and send-API idempotency keys are deleted once older than this, e.g. 2160h for 90 days; 0 (the default) keeps them. At least 24h: an event committed again after its records are gone is delivered again. In-app inbox and poisoned messages are kept."`
	MaxRetries     int           `name:"max-retries" env:"HERALD_MAX_RETRIES" default:"2" help:"Quick in-process retries of a transient failure before the message is parked in the persistent requeue (deliveries) or redelivered (events)."`

	SendTimeout      time.Duration `name:"send-timeout" env:"HERALD_SEND_TIMEOUT" default:"30s" help:"Longest provider call; a delivery's lease lasts twice as long (a crashed instance's deliveries wait that long)."`
	RetryMaxAttempts int           `name:"retry-max-attempts" env:"HERALD_RETRY_MAX_ATTEMPTS" default:"12" help:"Provider calls one delivery may take before a transient failure fails it."`
	RetryMaxAge      time.Duration `name:"retry-max-age" env:"HERALD_RETRY_MAX_AGE" default:"24h" help:"Age after which a transient failure fails a delivery."`
	RetryBudgets     []string      `name:"retry-budget" env:"HERALD_RETRY_BUDGET" sep:"," help:"Retry budget per event type, type=attempts/age (comma-separated), e.g. transaction.posted=20/48h."`
	RequeueInitial   time.Duration `name:"requeue-initial" env:"HERALD_REQUEUE_INITIAL" default:"1s" help:"Backoff ceiling of the first persistent requeue (doubles per requeue, full jitter)."`
	RequeueMax       time.Duration `name:"requeue-max" env:"HERALD_REQUEUE_MAX" default:"5m" help:"Largest persistent requeue backoff."`
	BreakerFailures  int           `name:"breaker-failures" env:"HERALD_BREAKER_FAILURES" default:"10" help:"Transient failures in a row (or 60% of 20 or more calls within 30s) that open a provider's circuit breaker (0 disables it)."`
	BreakerOpenFor   time.Duration `name:"breaker-open-for" env:"HERALD_BREAKER_OPEN_FOR" default:"10s" help:"How long an open breaker waits before letting one probe through."`
	RateLimits       []string      `name:"rate-limit" env:"HERALD_RATE_LIMIT" sep:"," help:"Provider send rates per second, channel=rate (comma-separated), e.g. sms=50,email=100."`
	RecipientCap     string        `name:"recipient-cap" env:"HERALD_RECIPIENT_CAP" help:"At most N messages per address per window, N/window, e.g. 10/1h; the critical lane is exempt. Empty: no cap."`
	Redis            string        `name:"redis" env:"HERALD_REDIS_URL" help:"Redis URL (redis://host:6379/0): delivery leases, rate limits and the recipient cap shared there instead of SQL/in-process."`

	SandboxLatency           string   `name:"sandbox-latency" env:"HERALD_SANDBOX_LATENCY" default:"0s" help:"Latency the sandbox providers add to each send: a duration, or channel=duration,..."`
	SandboxFailRate          string   `name:"sandbox-fail-rate" env:"HERALD_SANDBOX_FAIL_RATE" help:"Share (0..1) of sandbox sends that fail transiently: a number, or channel=number,..."`
	SandboxPermanentFailRate string   `name:"sandbox-permanent-fail-rate" env:"HERALD_SANDBOX_PERMANENT_FAIL_RATE" help:"Share (0..1) of sandbox sends rejected permanently: a number, or channel=number,..."`
	SandboxOutages           []string `name:"sandbox-outage" env:"HERALD_SANDBOX_OUTAGE" sep:"," help:"Sandbox provider outages, channel:start+duration from start-up, e.g. sms:10s+30s."`
	BodyLimit                int      `name:"body-limit" env:"HERALD_BODY_LIMIT" default:"1048576" help:"Largest HTTP request body in bytes."`

	LogFormat string `name:"log-format" env:"HERALD_LOG_FORMAT" enum:"auto,text,json" default:"auto" help:"Log format: auto (text on a terminal, JSON otherwise), text or json."`
	LogLevel  string `name:"log-level" env:"HERALD_LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Log level."`
}

// Kafka returns the Kafka transport config (no brokers: SQL mode).
func (c Config) Kafka() kafka.Config {
	return kafka.Config{Brokers: c.KafkaBrokers, TopicPrefix: c.KafkaTopicPrefix, ConsumerGroup: c.KafkaConsumerGroup,
		Partitions: c.KafkaPartitions, ReplicationFactor: c.KafkaReplicationFactor}
}

// Budgets parses --retry-budget.
func (c Config) Budgets() (map[string]handlers.RetryBudget, error) {
	out := map[string]handlers.RetryBudget{}
	for _, b := range c.RetryBudgets {
		typ, v, ok := strings.Cut(strings.TrimSpace(b), "=")
		n, age, ok2 := strings.Cut(v, "/")
		attempts, err1 := strconv.Atoi(n)
		d, err2 := time.ParseDuration(age)
		if !ok || !ok2 || typ == "" || err1 != nil || err2 != nil || attempts < 1 || d <= 0 {
			return nil, fmt.Errorf("%q: want type=attempts/age, e.g. otp.requested=3/5m", b)
		}
		out[typ] = handlers.RetryBudget{MaxAttempts: attempts, MaxAge: d}
	}
	return out, nil
}

// Rates parses --rate-limit: sends per second by channel.
func (c Config) Rates() (map[notify.Channel]int, error) {
	out := map[notify.Channel]int{}
	for _, r := range c.RateLimits {
		ch, v, ok := strings.Cut(strings.TrimSpace(r), "=")
		n, err := strconv.Atoi(v)
		if !ok || !notify.Channel(ch).Valid() || err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want channel=sends-per-second, e.g. sms=50", r)
		}
		out[notify.Channel(ch)] = n
	}
	return out, nil
}

// Cap parses --recipient-cap (max 0: no cap).
func (c Config) Cap() (int, time.Duration, error) {
	if strings.TrimSpace(c.RecipientCap) == "" {
		return 0, 0, nil
	}
	n, w, ok := strings.Cut(c.RecipientCap, "/")
	limit, err1 := strconv.Atoi(n)
	window, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || limit < 1 || window < time.Second || window > 24*time.Hour {
		return 0, 0, fmt.Errorf("%q: want N/window with a window from 1s to 24h, e.g. 10/1h", c.RecipientCap)
	}
	return limit, window, nil
}

// Sandbox returns the sandbox fault settings.
func (c Config) Sandbox() sandbox.FaultSpec {
	return sandbox.FaultSpec{FailRate: c.SandboxFailRate, PermanentFailRate: c.SandboxPermanentFailRate,
		Latency: c.SandboxLatency, Outages: c.SandboxOutages}
}

// NotifyChannels returns the configured channels.
func (c Config) NotifyChannels() []notify.Channel {
	out := make([]notify.Channel, 0, len(c.Channels))
	for _, ch := range c.Channels {
		out = append(out, notify.Channel(strings.TrimSpace(ch)))
	}
	return out
}

// Validate checks the whole config and reports every problem at once, each naming
// the flag and the environment variable to fix.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, env, msg string) {
		errs = append(errs, fmt.Errorf("--%s (%s): %s", flag, env, msg))
	}
	if _, _, err := sqlstore.ParseURL(c.DB); err != nil {
		bad("db", "HERALD_DB_URL", err.Error())
	}
	if c.DBMaxConns < 0 || c.DBMaxConns > 1000 {
		bad("db-max-conns", "HERALD_DB_MAX_CONNS", "must be from 1 to 1000")
	}
	if c.DBCommitters < 0 || c.DBCommitters > 64 {
		bad("db-committers", "HERALD_DB_COMMITTERS", "must be from 0 (automatic) to 64")
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || port == "" {
		bad("addr", "HERALD_HTTP_ADDR", fmt.Sprintf("%q is not host:port", c.Addr))
	}
	for _, k := range c.APIKeys {
		if len(strings.TrimSpace(k)) < 8 {
			bad("api-keys", "HERALD_API_KEYS", "every API key must have at least 8 characters")
			break
		}
	}
	if len(c.APIKeys) == 0 && err == nil && !loopback(host) {
		bad("api-keys", "HERALD_API_KEYS", fmt.Sprintf("API keys are required when listening on %s (not loopback)", c.Addr))
	}
	if len(c.KafkaBrokers) > 0 {
		if err := c.Kafka().WithDefaults().Validate(); err != nil {
			bad("kafka-brokers", "HERALD_KAFKA_BROKERS", err.Error())
		}
	}
	if len(c.Channels) == 0 {
		bad("channels", "HERALD_CHANNELS", "at least one channel is required")
	}
	for _, ch := range c.NotifyChannels() {
		if !ch.Valid() {
			bad("channels", "HERALD_CHANNELS", fmt.Sprintf("unknown channel %q (known: sms, email, inapp, wechat, push, webhook)", ch))
		}
	}
	if !notify.SupportedLocale(c.DefaultLocale) {
		bad("default-locale", "HERALD_DEFAULT_LOCALE", "must be zh-CN or en")
	}
	if _, err := time.LoadLocation(c.DefaultTimeZone); err != nil {
		bad("default-time-zone", "HERALD_DEFAULT_TIME_ZONE", err.Error())
	}
	if c.OTPTTL < time.Second || c.OTPTTL > time.Hour {
		bad("otp-ttl", "HERALD_OTP_TTL", "must be between 1s and 1h")
	}
	if c.PollInterval <= 0 || c.PollInterval > time.Minute {
		bad("poll-interval", "HERALD_POLL_INTERVAL", "must be between 1ns and 1m")
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		bad("batch-size", "HERALD_BATCH_SIZE", "must be from 1 to 10000")
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		bad("concurrency", "HERALD_CONCURRENCY", "must be from 1 to 10000")
	}
	if c.RetainRecords != 0 && c.RetainRecords < 24*time.Hour {
		bad("retain-records", "HERALD_RETAIN_RECORDS", "must be 0 (keep every record) or at least 24h: an event committed again after its records are pruned is delivered again")
	} else if c.RetainRecords > 0 && (c.RetainConsumed <= 0 || c.RetainConsumed > c.RetainRecords) {
		bad("retain-consumed", "HERALD_RETAIN_CONSUMED", "must be set and not longer than retain-records: a consumed outbox row that outlives its event's records shows the event as pending")
	}
	if c.RetainConsumed < 0 {
		bad("retain-consumed", "HERALD_RETAIN_CONSUMED", "must not be negative (0 keeps every row)")
	}
	if c.MaxRetries < 0 || c.MaxRetries > 100 {
		bad("max-retries", "HERALD_MAX_RETRIES", "must be from 0 to 100")
	}
	if c.SendTimeout < 100*time.Millisecond || c.SendTimeout > 10*time.Minute {
		bad("send-timeout", "HERALD_SEND_TIMEOUT", "must be between 100ms and 10m")
	}
	if c.RetryMaxAttempts < 1 {
		bad("retry-max-attempts", "HERALD_RETRY_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.RetryMaxAge <= 0 {
		bad("retry-max-age", "HERALD_RETRY_MAX_AGE", "must be positive")
	}
	if _, err := c.Budgets(); err != nil {
		bad("retry-budget", "HERALD_RETRY_BUDGET", err.Error())
	}
	if c.RequeueInitial <= 0 || c.RequeueMax < c.RequeueInitial {
		bad("requeue-initial", "HERALD_REQUEUE_INITIAL", "must be positive and at most --requeue-max")
	}
	if c.BreakerFailures < 0 {
		bad("breaker-failures", "HERALD_BREAKER_FAILURES", "must not be negative")
	}
	if c.BreakerOpenFor <= 0 {
		bad("breaker-open-for", "HERALD_BREAKER_OPEN_FOR", "must be positive")
	}
	if _, err := c.Rates(); err != nil {
		bad("rate-limit", "HERALD_RATE_LIMIT", err.Error())
	}
	if _, _, err := c.Cap(); err != nil {
		bad("recipient-cap", "HERALD_RECIPIENT_CAP", err.Error())
	}
	if c.Redis != "" && !strings.HasPrefix(c.Redis, "redis://") && !strings.HasPrefix(c.Redis, "rediss://") {
		bad("redis", "HERALD_REDIS_URL", "must be a redis:// or rediss:// URL")
	}
	if _, _, err := c.Sandbox().Parse(c.NotifyChannels()); err != nil {
		bad("sandbox-*", "HERALD_SANDBOX_*", err.Error())
	}
	if c.BodyLimit < 1024 {
		bad("body-limit", "HERALD_BODY_LIMIT", "must be at least 1024 bytes")
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Default returns the configuration with every default applied (and HERALD_*
// environment variables, as the CLI would), for programs that embed Herald.
func Default() (Config, error) {
	var c Config
	p, err := kong.New(&c, kong.Name("herald"), kong.Exit(func(int) {}))
	if err != nil {
		return c, err
	}
	_, err = p.Parse(nil)
	return c, err
}
