package stream_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/stream"
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

func testRecords(n int) []stream.Record {
	rs := make([]stream.Record, n)
	for i := range rs {
		rs[i] = stream.Record{PartitionKey: fmt.Sprintf("c%d", i%7), Data: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	return rs
}

func TestProducer_RetriesPartialFailuresAndThrottling(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{throttle: 2, failEvery: 3, failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := stream.NewProducer(fk, stream.ProducerConfig{Stream: "s", BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	require.NoError(t, err)
	records := testRecords(1200)
	results, err := p.Send(t.Context(), records)
	require.NoError(t, err)
	for i, r := range results {
		require.NoError(t, r, "record %d", i)
	}
	require.Len(t, fk.accepted, len(records), "every record stored")
	for k, n := range fk.accepted {
		require.Equal(t, 1, n, "stored once: %s", k)
	}
	for _, n := range fk.calls {
		require.LessOrEqual(t, n, stream.PutRecordsMaxRecords)
	}
	require.Equal(t, 500, fk.calls[0], "the first call is a full one (throttled)")
}

func TestProducer_ReportsRecordsThatNeverSucceed(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{throttle: 1000, failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := stream.NewProducer(fk, stream.ProducerConfig{Stream: "s", MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	require.NoError(t, err)
	results, err := p.Send(t.Context(), testRecords(3))
	require.NoError(t, err)
	for _, r := range results {
		require.ErrorContains(t, r, "slow down")
	}
	require.Len(t, fk.calls, 3, "MaxAttempts bounds the tries")
}

func TestProducer_SplitsCallsAtFiveMegabytes(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := stream.NewProducer(fk, stream.ProducerConfig{Stream: "s"})
	require.NoError(t, err)
	records := testRecords(400)
	for i := range records {
		records[i].Data = fmt.Appendf(nil, "%04d%s", i, make([]byte, 20<<10)) // ~20 KB each
	}
	results, err := p.Send(t.Context(), records)
	require.NoError(t, err)
	for _, r := range results {
		require.NoError(t, r)
	}
	require.Greater(t, len(fk.calls), 1, "400 x 20 KB does not fit one 5 MB call")
	require.Len(t, fk.accepted, 400)
}

func TestProducer_RefusesRecordsKinesisWouldReject(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := stream.NewProducer(fk, stream.ProducerConfig{Stream: "s"})
	require.NoError(t, err)
	records := testRecords(6)
	records[1].PartitionKey = ""
	records[2].Data = make([]byte, stream.PutRecordMaxBytes+1)
	// The record limit counts the partition key too.
	records[3].Data = make([]byte, stream.PutRecordMaxBytes-len(records[3].PartitionKey)+1)
	records[4].PartitionKey = strings.Repeat("é", stream.PartitionKeyMaxLen+1)
	// Exactly at both limits: accepted.
	records[5].PartitionKey = strings.Repeat("é", stream.PartitionKeyMaxLen)
	records[5].Data = make([]byte, stream.PutRecordMaxBytes-len(records[5].PartitionKey))
	results, err := p.Send(t.Context(), records)
	require.NoError(t, err)
	require.NoError(t, results[0])
	require.ErrorContains(t, results[1], "empty partition key")
	require.ErrorContains(t, results[2], "the Kinesis limit is 1048576")
	require.ErrorContains(t, results[3], "with the partition key, the Kinesis limit is 1048576")
	require.ErrorContains(t, results[4], "partition key of 257 characters, the Kinesis limit is 256")
	require.NoError(t, results[5])
	require.Len(t, fk.accepted, 2, "only the valid records are sent")
}
