package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/httpserver"
	"github.com/tailor-email/tailor/internal/metrics"
	"github.com/tailor-email/tailor/internal/opsstatus"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/stream"
	"github.com/tailor-email/tailor/pipeline/tracking"
	"github.com/tailor-email/tailor/preferences/web"
	"github.com/tailor-email/tailor/templates/rendermetrics"
)

// Profiles returns the profile store, creating its table when missing.
func Profiles(ctx context.Context, b *backends.Backends) (*profile.Store, error) {
	store := profile.NewStore(b.DynamoDB, b.Names.Profiles)
	if err := store.EnsureTable(ctx); err != nil {
		return nil, err
	}
	return store, nil
}

// Producer returns a producer for the event stream, creating the stream with shards shards
// when it does not exist.
func Producer(ctx context.Context, b *backends.Backends, shards int) (*stream.Producer, error) {
	if err := stream.EnsureStream(ctx, b.Kinesis, b.Names.Stream, shards); err != nil {
		return nil, err
	}
	return stream.NewProducer(b.Kinesis, stream.ProducerConfig{Stream: b.Names.Stream, Aggregate: true})
}

// Ingestor returns the ingestion path: validated events go to the stream (created with shards
// shards when missing), refused ones to dead_letters.
func Ingestor(ctx context.Context, b *backends.Backends, shards int) (*events.Ingestor, error) {
	p, err := Producer(ctx, b, shards)
	if err != nil {
		return nil, err
	}
	return &events.Ingestor{Stream: p, DeadLetters: deadletter.NewStore(b.Pool)}, nil
}

// ConsumerOptions are the consumer's settings; zero values mean the stream package's defaults.
type ConsumerOptions struct {
	Owner         string
	StartPosition string
	LeaseDuration time.Duration
	PollInterval  time.Duration
	Shards        int // when the stream must be created; default 4
	Writer        profile.WriterConfig
	AfterApply    func(events.AppliedBatch)
	// NoTriggers leaves triggered campaigns out (tests and benchmarks of the event path alone).
	NoTriggers bool
	Logger     *slog.Logger
}

// Consumer returns a consumer that reads the event stream with shard leases, dead-letters
// records that are not valid events and aggregates the rest into profiles.
func Consumer(ctx context.Context, b *backends.Backends, o ConsumerOptions) (*stream.Consumer, error) {
	if err := stream.EnsureStream(ctx, b.Kinesis, b.Names.Stream, max(o.Shards, 1)); err != nil {
		return nil, err
	}
	store, err := Profiles(ctx, b)
	if err != nil {
		return nil, err
	}
	if o.Writer.AfterWrite == nil && !o.NoTriggers {
		// Triggered campaigns are evaluated once each profile write is durable.
		trig, err := Triggers(b, store, o.Logger)
		if err != nil {
			return nil, err
		}
		o.Writer.AfterWrite = trig.AfterWrite
	}
	proc, err := events.NewProcessor(events.ProcessorConfig{
		Sink: profile.NewWriter(store, o.Writer), DeadLetters: deadletter.NewStore(b.Pool), AfterApply: o.AfterApply,
	})
	if err != nil {
		return nil, err
	}
	return stream.NewConsumer(b.Kinesis, b.DynamoDB, stream.ConsumerConfig{
		Stream: b.Names.Stream, LeaseTable: b.Names.Leases, Owner: o.Owner, StartPosition: o.StartPosition,
		LeaseDuration: o.LeaseDuration, PollInterval: o.PollInterval, Processor: proc, Logger: o.Logger,
	})
}

// CDC returns the change-data-capture process over the backends' slot and publication, with
// refused changes dead-lettered. cfg's connection and naming fields are filled in.
func CDC(ctx context.Context, b *backends.Backends, cfg cdc.Config) (*cdc.CDC, error) {
	store, err := Profiles(ctx, b)
	if err != nil {
		return nil, err
	}
	cfg.DatabaseURL, cfg.Slot, cfg.Publication = b.DatabaseURL, b.Names.Slot, b.Names.Publication
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.DeadLetters = deadletter.NewStore(b.Pool)
	return cdc.New(cfg, store)
}

// ProfileReader returns the profile reads the campaign jobs use (the store plus a parallel scan
// from a cursor), creating the table when missing.
func ProfileReader(ctx context.Context, b *backends.Backends) (*jobs.DynamoProfiles, error) {
	store, err := Profiles(ctx, b)
	if err != nil {
		return nil, err
	}
	return &jobs.DynamoProfiles{Store: store, DB: b.DynamoDB}, nil
}

// Workers returns the River client that works Tailor's queues over the backends' Postgres and
// profiles. cfg's Pool and Profiles are filled in.
func Workers(ctx context.Context, b *backends.Backends, cfg jobs.Config) (*river.Client[pgx.Tx], error) {
	profiles, err := ProfileReader(ctx, b)
	if err != nil {
		return nil, err
	}
	cfg.Pool, cfg.Profiles = b.Pool, profiles
	return jobs.NewClient(cfg)
}

// Triggers returns the evaluator of triggered campaigns the consumer runs after each profile
// write (profile.WriterConfig.AfterWrite).
func Triggers(b *backends.Backends, store *profile.Store, logger *slog.Logger) (*jobs.Triggers, error) {
	rc, err := jobs.NewInsertClient(b.Pool)
	if err != nil {
		return nil, err
	}
	return jobs.NewTriggers(jobs.TriggerConfig{Pool: b.Pool, Insert: rc, Profiles: store, Logger: logger})
}

// Outbox returns the publisher of delivery_outbox to the event stream (created with shards
// when missing). Every process that acks messages (tailor serve, tailor relay) runs one.
func Outbox(ctx context.Context, b *backends.Backends, shards int, logger *slog.Logger) (*delivery.Outbox, error) {
	p, err := Producer(ctx, b, shards)
	if err != nil {
		return nil, err
	}
	return delivery.NewOutbox(delivery.OutboxConfig{DB: b.Pool, Stream: p, Logger: logger})
}

// collectors are every component's metrics that need no connection.
func collectors() []prometheus.Collector {
	var out []prometheus.Collector
	for _, cs := range [][]prometheus.Collector{
		events.MetricsCollectors(), stream.MetricsCollectors(), profile.MetricsCollectors(), deadletter.MetricsCollectors(),
		cdc.MetricsCollectors(), rendermetrics.MetricsCollectors(), web.MetricsCollectors(), jobs.MetricsCollectors(),
		delivery.MetricsCollectors(), tracking.MetricsCollectors(),
	} {
		out = append(out, cs...)
	}
	return out
}

// Registry returns a Prometheus registry with the Go and process collectors, every component's
// metrics and extra (collectors that read a backend, such as cdc.NewCollector or
// opsstatus.NewCollector), so each command exposes the same names.
func Registry(extra ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := httpserver.NewRegistry()
	if err := metrics.Register(reg, append(collectors(), extra...)...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return reg, nil
}

// MetricsReference describes every metric a Tailor process may export (the Go and process
// collectors' go_* and process_* aside): the README's metrics table, and the names the Grafana
// dashboard and the alert rules may use.
func MetricsReference() ([]metrics.Info, error) {
	return metrics.Reference(append(collectors(), cdc.NewCollector(nil, backends.PrefixDefault+"cdc"), opsstatus.NewCollector(nil))...)
}
