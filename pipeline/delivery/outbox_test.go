package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/stream"
)

// Acks put their events in the outbox; the publisher moves them to the real stream
// (kinesalite) and empties the outbox; a stream that fails leaves them there.
func TestOutbox_PublishesAckEventsToTheStream(t *testing.T) {
	t.Parallel()
	ep, e := newStreamStoreEnv(t)
	ctx := t.Context()
	camp := e.campaign(t, jobs.StatusRendered, "")
	e.render(t, camp, "o", 3, e.clock.Now().Add(-60e9))
	msgs := e.claim(t, 3, 60e9, camp)
	e.ack(t, sentOutcomes(msgs)...)

	failing, err := delivery.NewOutbox(delivery.OutboxConfig{DB: ep.Pool, Stream: failingStream{}, Logger: discardLogger()})
	require.NoError(t, err)
	_, err = failing.PublishOnce(ctx)
	require.Error(t, err)
	pending, err := delivery.Pending(ctx, ep.Pool)
	require.NoError(t, err)
	require.Equal(t, int64(3), pending, "a failed publish keeps every event")

	ob, err := delivery.NewOutbox(delivery.OutboxConfig{DB: ep.Pool, Stream: ep.Producer, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, ob.Flush(ctx))
	pending, err = delivery.Pending(ctx, ep.Pool)
	require.NoError(t, err)
	require.Zero(t, pending)

	shards, err := ep.Kinesis.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(ep.Names.Stream)})
	require.NoError(t, err)
	it, err := ep.Kinesis.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(ep.Names.Stream),
		ShardId: shards.Shards[0].ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)
	recs, err := ep.Kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	require.NoError(t, err)
	require.Len(t, recs.Records, 1, "the three events went in one aggregated Kinesis record")
	subs, err := stream.Deaggregate(stream.Record{PartitionKey: aws.ToString(recs.Records[0].PartitionKey), Data: recs.Records[0].Data})
	require.NoError(t, err)
	var got []string
	for _, r := range subs {
		ev, err := events.Decode(r.Data, events.DecodeOptions{Now: e.clock.Now()})
		require.NoError(t, err)
		require.Equal(t, r.PartitionKey, ev.CustomerID, "each event keeps its own partition key")
		got = append(got, ev.Type+" "+ev.Properties.MessageID)
	}
	var want []string
	for _, m := range msgs {
		want = append(want, fmt.Sprint(events.TypeEmailSent, " ", m.ID))
	}
	require.ElementsMatch(t, want, got, "each sent message's event is on the stream once")
}

// newStreamStoreEnv is a store on a database whose events go to a real one-shard stream.
func newStreamStoreEnv(t *testing.T) (*eventpath.Env, *storeEnv) {
	ep := eventpath.New(t, 1)
	e := &storeEnv{Env: ep.Env, clock: newTestClock()}
	var err error
	e.store, err = delivery.NewStore(delivery.StoreConfig{DB: ep.Pool, Now: e.clock.Now, Logger: discardLogger()})
	require.NoError(t, err)
	return ep, e
}

type failingStream struct{}

func (failingStream) Send(context.Context, []stream.Record) ([]error, error) {
	return nil, errors.New("stream down")
}

// Stop lets the batch in progress finish (its events leave the outbox), and cuts it short
// only when its own context ends (the events stay for the next publisher).
func TestOutbox_StopFinishesTheBatchInProgress(t *testing.T) {
	t.Parallel()
	ep, e := newStreamStoreEnv(t)
	camp := e.campaign(t, jobs.StatusRendered, "")
	e.render(t, camp, "s", 4, e.clock.Now().Add(-60e9))
	pending := func() int64 {
		n, err := delivery.Pending(t.Context(), ep.Pool)
		require.NoError(t, err)
		return n
	}
	for _, cut := range []bool{false, true} {
		e.ack(t, sentOutcomes(e.claim(t, 2, 60e9, camp))...)
		require.Equal(t, int64(2), pending())
		gate := &gatedStream{next: ep.Producer, entered: make(chan struct{}), release: make(chan struct{})}
		ob, err := delivery.NewOutbox(delivery.OutboxConfig{DB: ep.Pool, Stream: gate, Logger: discardLogger()})
		require.NoError(t, err)
		require.NoError(t, ob.Start(t.Context()))
		<-gate.entered // the batch is on its way
		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan error, 1)
		go func() { stopped <- ob.Stop(ctx) }()
		if cut {
			cancel()
			require.ErrorIs(t, <-stopped, context.Canceled)
			require.Equal(t, int64(2), pending(), "cut short: the events stay")
			require.NoError(t, ob.Flush(t.Context()), "and the next publisher takes them")
		} else {
			close(gate.release)
			require.NoError(t, <-stopped)
		}
		cancel()
		require.Zero(t, pending(), "cut=%v", cut)
	}
}

// gatedStream holds its first Send until release is closed (or the Send's context ends).
type gatedStream struct {
	next             events.RecordSender
	entered, release chan struct{}
	once             sync.Once
}

func (g *gatedStream) Send(ctx context.Context, recs []stream.Record) ([]error, error) {
	first := false
	g.once.Do(func() { first = true; close(g.entered) })
	if first {
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.next.Send(ctx, recs)
}
