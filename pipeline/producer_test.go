package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// flakyKinesis fails calls and records as scripted, and remembers what it accepted.
type flakyKinesis struct {
	mu        sync.Mutex
	calls     []int // records per call
	throttle  int   // fail this many whole calls with throttling first
	failEvery int   // then fail every n-th record of each call (partial failure), once per key
	failed    map[string]bool
	accepted  map[string]int
}

func (f *flakyKinesis) PutRecords(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, len(in.Records))
	if f.throttle > 0 {
		f.throttle--
		return nil, &ktypes.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
	}
	out := &kinesis.PutRecordsOutput{}
	for i, r := range in.Records {
		k := string(r.Data)
		if f.failEvery > 0 && i%f.failEvery == 0 && !f.failed[k] {
			f.failed[k] = true
			out.FailedRecordCount = aws.Int32(aws.ToInt32(out.FailedRecordCount) + 1)
			out.Records = append(out.Records, ktypes.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException"), ErrorMessage: aws.String("rate exceeded")})
			continue
		}
		f.accepted[k]++
		out.Records = append(out.Records, ktypes.PutRecordsResultEntry{SequenceNumber: aws.String(fmt.Sprint(len(f.accepted))), ShardId: aws.String("shardId-000000000000")})
	}
	return out, nil
}

func testEvents(n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = productView(fmt.Sprintf("e%04d", i), fmt.Sprintf("c%d", i%7), decodeNow)
	}
	return evs
}

func TestProducer_RetriesPartialFailuresAndThrottling(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{throttle: 2, failEvery: 3, failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := NewProducer(fk, ProducerConfig{Stream: "s", BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	require.NoError(t, err)
	events := testEvents(1200)
	results, err := p.Send(t.Context(), events)
	require.NoError(t, err)
	for i, r := range results {
		require.NoError(t, r, "event %d", i)
	}
	require.Len(t, fk.accepted, len(events), "every event stored")
	for k, n := range fk.accepted {
		require.Equal(t, 1, n, "stored once: %s", k)
	}
	for _, n := range fk.calls {
		require.LessOrEqual(t, n, PutRecordsMaxRecords)
	}
	require.Equal(t, 500, fk.calls[0], "the first call is a full one (throttled)")
}

func TestProducer_ReportsRecordsThatNeverSucceed(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{throttle: 1000, failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := NewProducer(fk, ProducerConfig{Stream: "s", MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	require.NoError(t, err)
	results, err := p.Send(t.Context(), testEvents(3))
	require.NoError(t, err)
	for _, r := range results {
		require.ErrorContains(t, r, "slow down")
	}
	require.Len(t, fk.calls, 3, "MaxAttempts bounds the tries")
}

func TestProducer_SplitsCallsAtFiveMegabytes(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := NewProducer(fk, ProducerConfig{Stream: "s"})
	require.NoError(t, err)
	events := testEvents(400)
	for i := range events {
		events[i].Properties.Category = fmt.Sprintf("%04d%s", i, string(make([]byte, 20<<10))) // ~20 KB each
	}
	results, err := p.Send(t.Context(), events)
	require.NoError(t, err)
	for _, r := range results {
		require.NoError(t, r)
	}
	require.Greater(t, len(fk.calls), 1, "400 x 20 KB does not fit one 5 MB call")
	require.Len(t, fk.accepted, 400)
}
