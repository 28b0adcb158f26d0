// Package config is Herald's one typed configuration: command-line flags over HERALD_*
// environment variables over an optional YAML file over defaults, validated at start.
package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// Config is everything a running Herald needs. The struct tags drive the CLI (kong):
// every field is a flag, an environment variable and a YAML key (the flag name).
type Config struct {
	DB         string   `name:"db" env:"HERALD_DB_URL" default:"sqlite://herald.db" help:"Database URL (sqlite://path/to/file.db)."`
	DBMaxConns int      `name:"db-max-conns" env:"HERALD_DB_MAX_CONNS" default:"16" help:"Connection pool size on PostgreSQL and MySQL."`
	Addr       string   `name:"addr" env:"HERALD_HTTP_ADDR" default:"127.0.0.1:8080" help:"HTTP listen address."`
	APIKeys    []string `name:"api-keys" env:"HERALD_API_KEYS" sep:"," help:"API keys accepted as 'Authorization: Bearer <key>' (comma-separated). Required unless listening on loopback."`
	Channels   []string `name:"channels" env:"HERALD_CHANNELS" sep:"," default:"sms,email,inapp,wechat,push,webhook" help:"Channels to deliver."`

	KafkaBrokers           []string `name:"kafka-brokers" env:"HERALD_KAFKA_BROKERS" sep:"," help:"Kafka brokers (host:port, comma-separated); turns on Kafka mode."`
	KafkaTopicPrefix       string   `name:"kafka-topic-prefix" env:"HERALD_KAFKA_TOPIC_PREFIX" default:"herald." help:"Prefix of Herald's Kafka topics."`
	KafkaConsumerGroup     string   `name:"kafka-consumer-group" env:"HERALD_KAFKA_CONSUMER_GROUP" default:"herald" help:"Kafka consumer group of Herald's instances."`
	KafkaPartitions        int32    `name:"kafka-partitions" env:"HERALD_KAFKA_PARTITIONS" default:"4" help:"Partitions of the Kafka topics Herald creates."`
	KafkaReplicationFactor int16    `name:"kafka-replication-factor" env:"HERALD_KAFKA_REPLICATION_FACTOR" default:"1" help:"Replication factor of the Kafka topics Herald creates (3 in production)."`

	Bank            string `name:"bank-name" env:"HERALD_BANK_NAME" default:"Herald Bank" help:"Sender name shown in messages."`
	DefaultLocale   string `name:"default-locale" env:"HERALD_DEFAULT_LOCALE" default:"zh-CN" help:"Locale when neither event nor recipient has one (zh-CN, en)."`
	DefaultTimeZone string `name:"default-time-zone" env:"HERALD_DEFAULT_TIME_ZONE" default:"Asia/Shanghai" help:"Time zone when the recipient has none."`

	OTPTTL time.Duration `name:"otp-ttl" env:"HERALD_OTP_TTL" default:"5m" help:"One-time passwords not sent within this time after the event expire (status expired)."`

	PollInterval time.Duration `name:"poll-interval" env:"HERALD_POLL_INTERVAL" default:"10ms" help:"How long an idle SQL subscriber waits before polling again."`
	BatchSize    int           `name:"batch-size" env:"HERALD_BATCH_SIZE" default:"100" help:"Rows one SQL subscriber query reads."`
	MaxRetries   int           `name:"max-retries" env:"HERALD_MAX_RETRIES" default:"5" help:"In-process retries of a transient failure before the message is poisoned."`

	SandboxLatency time.Duration `name:"sandbox-latency" env:"HERALD_SANDBOX_LATENCY" default:"0s" help:"Latency the sandbox providers add to each send."`
	BodyLimit      int           `name:"body-limit" env:"HERALD_BODY_LIMIT" default:"1048576" help:"Largest HTTP request body in bytes."`

	LogFormat string `name:"log-format" env:"HERALD_LOG_FORMAT" enum:"auto,text,json" default:"auto" help:"Log format: auto (text on a terminal, JSON otherwise), text or json."`
	LogLevel  string `name:"log-level" env:"HERALD_LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Log level."`
}

// Kafka returns the Kafka transport config (no brokers: SQL mode).
func (c Config) Kafka() kafka.Config {
	return kafka.Config{Brokers: c.KafkaBrokers, TopicPrefix: c.KafkaTopicPrefix, ConsumerGroup: c.KafkaConsumerGroup,
		Partitions: c.KafkaPartitions, ReplicationFactor: c.KafkaReplicationFactor}
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
	if c.MaxRetries < 0 || c.MaxRetries > 100 {
		bad("max-retries", "HERALD_MAX_RETRIES", "must be from 0 to 100")
	}
	if c.SandboxLatency < 0 {
		bad("sandbox-latency", "HERALD_SANDBOX_LATENCY", "must not be negative")
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
