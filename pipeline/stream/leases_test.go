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
