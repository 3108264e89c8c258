package stream_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/metrics"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func TestConsumer_CountsEventsOnceDespiteRedelivery(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 2)
	now := time.Now().UTC()
	var evs []events.Event
	for i := range 30 {
		evs = append(evs, profiletest.ProductView(fmt.Sprintf("ev-%d", i), fmt.Sprintf("c-%d", i%3), now))
	}
	e.Send(t, evs)
	// Redelivery: the same events again (a producer retry after a timeout looks like this).
	e.Send(t, evs[:15])

	var applied atomic.Int64
	e.StartConsumer(t, eventpath.Consumer{AfterApply: func(b events.AppliedBatch) { applied.Add(int64(len(b.Events))) }})
	ctx := t.Context()
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) {
		return applied.Load() == 45, fmt.Sprintf("%d of 45 records applied", applied.Load())
	})
	for c := range 3 {
		p, err := e.Store.Get(ctx, fmt.Sprintf("c-%d", c))
		require.NoError(t, err)
		require.Equal(t, int64(10), p.Behaviour.Counts[events.TypeProductView], "c-%d", c)
	}
	// Every shard is checkpointed once its effects are durable.
	leases, err := stream.NewLeaseTable(e.DynamoDB, e.Names.Leases).List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 2)
	for _, l := range leases {
		require.NotEmpty(t, l.Checkpoint, "shard %s", l.ShardID)
		require.InDelta(t, time.Now().UnixMilli(), l.CheckpointedAt, float64(5*time.Minute/time.Millisecond), "shard %s: checkpoint time recorded", l.ShardID)
	}
	// MillisBehindLatest is exported per shard this process reads.
	reg := prometheus.NewRegistry()
	require.NoError(t, metrics.Register(reg, stream.MetricsCollectors()...))
	families, err := reg.Gather()
	require.NoError(t, err)
	shards := map[string]bool{}
	for _, fam := range families {
		if fam.GetName() != "tailor_consumer_iterator_age_seconds" {
			continue
		}
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			// Tests in parallel read shards of the same ids on other streams.
			if labels["stream"] == e.Names.Stream {
				shards[labels["shard"]] = true
			}
		}
	}
	for _, l := range leases {
		require.True(t, shards[l.ShardID], "millis behind latest for %s", l.ShardID)
	}
}
