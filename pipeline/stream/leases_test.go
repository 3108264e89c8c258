package stream_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func TestLeaseTable_ConditionalWritesFenceStaleOwners(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	lt := stream.NewLeaseTable(env.DynamoDB, env.Names.Leases)
	require.NoError(t, lt.EnsureTable(ctx))
	created, err := lt.Create(ctx, "shard-1", []string{"shard-0"})
	require.NoError(t, err)
	require.True(t, created)
	created, err = lt.Create(ctx, "shard-1", nil)
	require.NoError(t, err)
	require.False(t, created, "an existing lease is kept")

	leases, err := lt.List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 1)
	free := leases[0]
	require.Equal(t, []string{"shard-0"}, free.Parents)
	now := time.Now()
	require.False(t, free.Held(now))

	// Two owners race for the same free lease: exactly one wins.
	a, errA := lt.Take(ctx, free, "a", time.Minute, now)
	_, errB := lt.Take(ctx, free, "b", time.Minute, now)
	require.NoError(t, errA)
	require.ErrorIs(t, errB, stream.ErrLeaseLost)
	require.True(t, a.Held(now))

	a, err = lt.Renew(ctx, a, time.Minute, now)
	require.NoError(t, err)
	a, err = lt.Checkpoint(ctx, a, "100")
	require.NoError(t, err)

	// b steals the lease it saw; a's next renew and checkpoint are refused.
	seen, err := lt.List(ctx)
	require.NoError(t, err)
	b, err := lt.Take(ctx, seen[0], "b", time.Minute, now)
	require.NoError(t, err)
	require.Equal(t, "100", b.Checkpoint, "the checkpoint moves with the lease")
	_, err = lt.Renew(ctx, a, time.Minute, now)
	require.ErrorIs(t, err, stream.ErrLeaseLost)
	_, err = lt.Checkpoint(ctx, a, "200")
	require.ErrorIs(t, err, stream.ErrLeaseLost)

	// b finishes the shard and releases it.
	b, err = lt.Checkpoint(ctx, b, stream.CheckpointShardEnd)
	require.NoError(t, err)
	require.NoError(t, lt.Release(ctx, b))
	leases, err = lt.List(ctx)
	require.NoError(t, err)
	require.True(t, leases[0].Finished())
	require.Empty(t, leases[0].Owner)
	require.False(t, leases[0].Held(time.Now()))
}

// A renewal carries the owner's lag report and a checkpoint its time, so that tailor status
// reads every shard's lag from the table; a renewal without a report keeps the last one.
func TestLeaseTable_RecordsLagAndCheckpointTime(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	lt := stream.NewLeaseTable(env.DynamoDB, env.Names.Leases)
	require.NoError(t, lt.EnsureTable(ctx))
	_, err := lt.Create(ctx, "shard-1", nil)
	require.NoError(t, err)
	leases, err := lt.List(ctx)
	require.NoError(t, err)
	now := time.Now()
	l, err := lt.Take(ctx, leases[0], "a", time.Minute, now)
	require.NoError(t, err)

	l.IteratorAgeMillis, l.LagReportedAt = 4200, now.UnixMilli()
	l, err = lt.Renew(ctx, l, time.Minute, now)
	require.NoError(t, err)
	l, err = lt.Checkpoint(ctx, l, "49590338271490256608559692538361571095921575989136588898")
	require.NoError(t, err)
	l.LagReportedAt = 0 // no new report: the stored one stays
	_, err = lt.Renew(ctx, l, time.Minute, now)
	require.NoError(t, err)

	leases, err = lt.List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 1)
	got := leases[0]
	require.Equal(t, int64(4200), got.IteratorAgeMillis)
	require.Equal(t, now.UnixMilli(), got.LagReportedAt)
	require.InDelta(t, time.Now().UnixMilli(), got.CheckpointedAt, 60_000)
	require.Equal(t, "a", got.Owner)
}
