package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/events/eventstest"
	"github.com/tailor-email/tailor/pipeline/stream"
)

type sinkFunc func(ctx context.Context, evs []events.Event) error

func (f sinkFunc) Apply(ctx context.Context, evs []events.Event) error { return f(ctx, evs) }

type deadLetterFunc func(ctx context.Context, source, reason string, payload []byte) error

func (f deadLetterFunc) Put(ctx context.Context, source, reason string, payload []byte) error {
	return f(ctx, source, reason, payload)
}

func TestProcessor_AppliesMaximalEventsWhoseNormalFormIsLonger(t *testing.T) {
	t.Parallel()
	raw := eventstest.Sized("max-1", "c1", time.Now().Add(-time.Minute), events.MaxEventBytes)
	require.Len(t, raw, events.MaxEventBytes)
	ev, err := events.Decode(raw, events.DecodeOptions{})
	require.NoError(t, err, "an event of exactly the limit is valid")
	rec, err := events.Record(ev)
	require.NoError(t, err)
	require.Greater(t, len(rec.Data), events.MaxEventBytes, "the case under test: the normalised form is longer")
	require.Less(t, len(rec.Data), events.MaxEventBytes+64, "< > & are not escaped on the stream")

	var applied []events.Event
	var deadLetters []string
	p, err := events.NewProcessor(events.ProcessorConfig{
		Sink: sinkFunc(func(_ context.Context, evs []events.Event) error { applied = append(applied, evs...); return nil }),
		DeadLetters: deadLetterFunc(func(_ context.Context, _, reason string, _ []byte) error {
			deadLetters = append(deadLetters, reason)
			return nil
		}),
	})
	require.NoError(t, err)
	rec.SequenceNumber = "1"
	require.NoError(t, p.Process(t.Context(), stream.Batch{ShardID: "shardId-0", Records: []stream.Record{rec}}))
	require.Empty(t, deadLetters, "an accepted event never becomes a dead letter on the stream side")
	require.Len(t, applied, 1)
	require.Equal(t, ev.EventID, applied[0].EventID)
	require.Equal(t, ev.Properties.Data, applied[0].Properties.Data, "the padding survives the round trip")
}

// A record the consumer could not unpack (a corrupt KPL aggregate) is a dead letter with that
// reason and the whole record; the batch's other events are applied.
func TestProcessor_DeadLettersARecordThatCouldNotBeUnpacked(t *testing.T) {
	t.Parallel()
	ev := events.Event{EventID: "e1", CustomerID: "c1", Type: events.TypePageView, Timestamp: time.Now().UTC().Add(-time.Minute),
		Properties: events.Properties{URL: "https://shop.example/"}}
	good, err := events.Record(ev)
	require.NoError(t, err)
	bad := stream.Record{PartitionKey: "c2", Data: []byte("\xf3\x89\x9a\xc2garbage-with-a-wrong-checksum"), SequenceNumber: "2",
		Err: fmt.Errorf("%w: MD5 mismatch", stream.ErrBadAggregate)}
	var applied []events.Event
	type letter struct{ reason, payload string }
	var letters []letter
	p, err := events.NewProcessor(events.ProcessorConfig{
		Sink: sinkFunc(func(_ context.Context, evs []events.Event) error { applied = append(applied, evs...); return nil }),
		DeadLetters: deadLetterFunc(func(_ context.Context, _, reason string, payload []byte) error {
			letters = append(letters, letter{reason, string(payload)})
			return nil
		}),
	})
	require.NoError(t, err)
	require.NoError(t, p.Process(t.Context(), stream.Batch{ShardID: "shardId-0", Records: []stream.Record{bad, good}}))
	require.Equal(t, []letter{{"malformed KPL aggregated record: MD5 mismatch", string(bad.Data)}}, letters)
	require.Len(t, applied, 1)
	require.Equal(t, "e1", applied[0].EventID)
}
