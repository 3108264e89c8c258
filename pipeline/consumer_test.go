package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
)

// streamEnv is what the event-path integration tests need: backends with a stream, the
// profiles and lease tables, and a producer.
type streamEnv struct {
	*testenv.Env
	store    *ProfileStore
	producer *Producer
}

func setupStream(t testing.TB, shards int) *streamEnv {
	t.Helper()
	integration(t)
	env := testenv.New(t)
	ctx := t.Context()
	require.NoError(t, EnsureStream(ctx, env.Kinesis, env.Names.Stream, shards))
	store := NewProfileStore(env.DynamoDB, env.Names.Profiles)
	require.NoError(t, store.EnsureTable(ctx))
	p, err := NewProducer(env.Kinesis, ProducerConfig{Stream: env.Names.Stream})
	require.NoError(t, err)
	return &streamEnv{Env: env, store: store, producer: p}
}

func (e *streamEnv) send(t testing.TB, events []Event) {
	t.Helper()
	results, err := e.producer.Send(t.Context(), events)
	require.NoError(t, err)
	for i, r := range results {
		require.NoError(t, r, "event %d", i)
	}
}

// startConsumer runs a consumer until the test ends (or the returned cancel is called) and
// waits for Run to return.
func (e *streamEnv) startConsumer(t testing.TB, cfg ConsumerConfig) (*Consumer, context.CancelFunc) {
	t.Helper()
	cfg.Stream = e.Names.Stream
	cfg.LeaseTable = e.Names.Leases
	if cfg.Sink == nil {
		cfg.Sink = NewProfileWriter(e.store, ProfileWriterConfig{})
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 3 * time.Second
	}
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 50*time.Millisecond)
	cfg.DiscoverInterval = 500 * time.Millisecond
	c, err := NewConsumer(e.Kinesis, e.DynamoDB, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("consumer did not stop")
		}
	})
	return c, cancel
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
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
		time.Sleep(delay)
		delay = min(delay*2, 500*time.Millisecond)
	}
}

func productView(id, customer string, at time.Time) Event {
	return Event{EventID: id, CustomerID: customer, Type: TypeProductView, Timestamp: at.UTC(), Properties: Properties{ProductID: "p-" + id}}
}

func TestConsumer_CountsEventsOnceDespiteRedelivery(t *testing.T) {
	t.Parallel()
	e := setupStream(t, 2)
	now := time.Now().UTC()
	var events []Event
	for i := range 30 {
		events = append(events, productView(fmt.Sprintf("ev-%d", i), fmt.Sprintf("c-%d", i%3), now))
	}
	e.send(t, events)
	// Redelivery: the same events again (a producer retry after a timeout looks like this).
	e.send(t, events[:15])

	var applied atomic.Int64
	e.startConsumer(t, ConsumerConfig{AfterApply: func(b AppliedBatch) { applied.Add(int64(len(b.Events))) }})
	ctx := t.Context()
	eventually(t, 30*time.Second, func() (bool, string) {
		return applied.Load() == 45, fmt.Sprintf("%d of 45 records applied", applied.Load())
	})
	for c := range 3 {
		p, err := e.store.Get(ctx, fmt.Sprintf("c-%d", c))
		require.NoError(t, err)
		require.Equal(t, float64(10), p["count_product_view"], "c-%d", c)
	}
	// Every shard is checkpointed once its effects are durable.
	leases, err := NewLeaseTable(e.DynamoDB, e.Names.Leases).List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 2)
	for _, l := range leases {
		require.NotEmpty(t, l.Checkpoint, "shard %s", l.ShardID)
	}
	// MillisBehindLatest is exported per shard this process reads.
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(millisBehindLatest))
	families, err := reg.Gather()
	require.NoError(t, err)
	shards := map[string]bool{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				shards[l.GetValue()] = true
			}
		}
	}
	for _, l := range leases {
		require.True(t, shards[l.ShardID], "millis behind latest for %s", l.ShardID)
	}
}
