package events_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/events"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestReplay_ResendsOnlyValidOnes(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 1)
	dls := e.DeadLetters
	ctx := t.Context()
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	good, err := dls.Insert(ctx, events.SourceAPI, "stream unavailable", []byte(`{"event_id":"r1","customer_id":"c9","type":"search","timestamp":"`+ts+`","properties":{"query":"boots"}}`))
	require.NoError(t, err)
	badID, err := dls.Insert(ctx, events.SourceAPI, "malformed", []byte(`{"event_id":`))
	require.NoError(t, err)
	results, err := events.Replay(ctx, dls, e.Producer, []int64{good, badID}, events.DecodeOptions{})
	require.NoError(t, err)
	require.Equal(t, []events.ReplayResult{{ID: good, Accepted: true}, {ID: badID, Reason: results[1].Reason}}, results)
	require.Contains(t, results[1].Reason, "malformed JSON")
	dl, err := dls.Get(ctx, good)
	require.NoError(t, err)
	require.NotNil(t, dl.ReplayedAt)
	pending, err := dls.List(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, badID, pending[0].ID)

	var applied atomic.Int64
	e.StartConsumer(t, eventpath.Consumer{AfterApply: func(b events.AppliedBatch) { applied.Add(int64(len(b.Events))) }})
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) { return applied.Load() == 1, fmt.Sprint(applied.Load(), " applied") })
	p, err := e.Store.Get(ctx, "c9")
	require.NoError(t, err)
	require.Equal(t, int64(1), p.Behaviour.Counts[events.TypeSearch])
}
