package eventpath

import (
	"cmp"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/stream"
)

// Env is one test's event path.
type Env struct {
	*testenv.Env
	Store       *profile.Store
	Producer    *stream.Producer
	DeadLetters *deadletter.Store
}

// New returns an isolated event path with a stream of shards shards.
func New(t testing.TB, shards int) *Env {
	t.Helper()
	env := testenv.New(t)
	ctx := t.Context()
	require.NoError(t, stream.EnsureStream(ctx, env.Kinesis, env.Names.Stream, shards))
	store := profile.NewStore(env.DynamoDB, env.Names.Profiles)
	require.NoError(t, store.EnsureTable(ctx))
	// Aggregating as internal/app's producer does; the tests reshard between sends, so every
	// Send reads the shard map.
	p, err := stream.NewProducer(env.Kinesis, stream.ProducerConfig{Stream: env.Names.Stream, Aggregate: true, ShardMapTTL: time.Nanosecond})
	require.NoError(t, err)
	return &Env{Env: env, Store: store, Producer: p, DeadLetters: deadletter.NewStore(env.Pool)}
}

// Send puts events on the stream and fails the test unless every one is durable.
func (e *Env) Send(t testing.TB, evs []events.Event) {
	t.Helper()
	results, err := events.Publish(t.Context(), e.Producer, evs)
	require.NoError(t, err)
	for i, r := range results {
		require.NoError(t, r, "event %d", i)
	}
}

// Consumer configures StartConsumer: the stream settings, and a hook called after each batch
// is durable. Stream, LeaseTable and Processor are filled in.
type Consumer struct {
	stream.ConsumerConfig
	AfterApply func(events.AppliedBatch)
	// Processor replaces the production processor when set.
	Processor stream.Processor
}

// StartConsumer runs a consumer that aggregates into the env's profiles until the test ends
// (or the returned cancel is called, a hard stop), and then waits for Run to return.
func (e *Env) StartConsumer(t testing.TB, c Consumer) (*stream.Consumer, context.CancelFunc) {
	t.Helper()
	cfg := c.ConsumerConfig
	cfg.Stream, cfg.LeaseTable = e.Names.Stream, e.Names.Leases
	cfg.Processor = c.Processor
	if cfg.Processor == nil {
		proc, err := events.NewProcessor(events.ProcessorConfig{
			Sink: profile.NewWriter(e.Store, profile.WriterConfig{}), DeadLetters: e.DeadLetters, AfterApply: c.AfterApply,
		})
		require.NoError(t, err)
		cfg.Processor = proc
	}
	cfg.LeaseDuration = cmp.Or(cfg.LeaseDuration, 3*time.Second)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 50*time.Millisecond)
	cfg.ReadInterval = cmp.Or(cfg.ReadInterval, 20*time.Millisecond)
	cfg.DiscoverInterval = cmp.Or(cfg.DiscoverInterval, 500*time.Millisecond)
	consumer, err := stream.NewConsumer(e.Kinesis, e.DynamoDB, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("consumer did not stop")
		}
	})
	return consumer, cancel
}

// Eventually polls cond until it holds or timeout passes, backing off from 20ms to 500ms; msg
// says what is missing when it fails.
func Eventually(t testing.TB, timeout time.Duration, cond func() (ok bool, msg string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, msg)
		}
		timer := time.NewTimer(delay)
		select {
		case <-t.Context().Done():
			timer.Stop()
			t.Fatalf("test ended while waiting: %s", msg)
		case <-timer.C:
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
