package delivery_test

import (
	"context"
	"errors"
	"fmt"
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
	ep := eventpath.New(t, 1)
	ctx := t.Context()
	e := &storeEnv{Env: ep.Env, clock: newTestClock()}
	var err error
	e.store, err = delivery.NewStore(delivery.StoreConfig{DB: ep.Pool, Now: e.clock.Now, Logger: discardLogger()})
	require.NoError(t, err)
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

type failingStream struct{}

func (failingStream) Send(context.Context, []stream.Record) ([]error, error) {
	return nil, errors.New("stream down")
}
