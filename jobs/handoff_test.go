package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/profile"
)

func heldProfiles(ids ...string) map[string]*profile.Profile {
	out := map[string]*profile.Profile{}
	for _, id := range ids {
		out[id] = &profile.Profile{ID: id}
	}
	return out
}

func TestHandoff_TakeReturnsABatchOnce(t *testing.T) {
	t.Parallel()
	h := newHandoff(10, 100, time.Hour)
	at := time.Unix(1700000000, 0)
	key := batchKey(7, at, []string{"a", "b"})
	require.NoError(t, h.put(context.Background(), key, heldProfiles("a", "b")))
	require.Nil(t, h.take(batchKey(7, at, []string{"c"})), "a batch never put")
	got := h.take(key)
	require.Len(t, got, 2)
	require.Equal(t, "b", got["b"].ID)
	require.Nil(t, h.take(key), "taken once")
	require.Zero(t, h.held)
	require.Nil(t, newHandoff(0, 1, time.Second), "no hand-off")
	require.Nil(t, (*handoff)(nil).take(key), "a nil hand-off holds nothing")
	require.NoError(t, (*handoff)(nil).put(context.Background(), key, heldProfiles("a")))
}

// A full hand-off makes the fan-out wait for a take; when none comes, the oldest batch goes.
func TestHandoff_FullWaitsForATakeThenDropsTheOldest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHandoff(3, 100, time.Hour)
	require.NoError(t, h.put(ctx, "A", heldProfiles("a1", "a2")))
	done := make(chan error, 1)
	go func() { done <- h.put(ctx, "B", heldProfiles("b1", "b2")) }()
	require.Len(t, h.take("A"), 2, "a render job takes A: B finds room")
	require.NoError(t, <-done)
	require.Equal(t, 2, h.held)

	h = newHandoff(3, 100, time.Millisecond)
	require.NoError(t, h.put(ctx, "A", heldProfiles("a1", "a2")))
	require.NoError(t, h.put(ctx, "B", heldProfiles("b1", "b2")), "nobody takes A: it is dropped")
	require.Nil(t, h.take("A"))
	require.Len(t, h.take("B"), 2)

	h = newHandoff(1, 100, time.Hour)
	require.NoError(t, h.put(ctx, "A", heldProfiles("a")))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, h.put(cctx, "B", heldProfiles("b")), context.Canceled)
}

// A batch put more than lag batches before the one a job takes was taken by another process:
// it is dropped rather than kept until the bound forces it out.
func TestHandoff_DropsBatchesOtherProcessesTook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHandoff(100, 2, time.Hour)
	for i := range 5 {
		require.NoError(t, h.put(ctx, fmt.Sprint(i), heldProfiles(fmt.Sprint("c", i))))
	}
	require.NotNil(t, h.take("4"))
	require.Nil(t, h.take("0"), "put 4 batches earlier: another process's")
	require.Nil(t, h.take("1"))
	require.NotNil(t, h.take("2"), "within the lag: maybe still ours")
	require.NotNil(t, h.take("3"))
	require.Zero(t, h.held)
}
