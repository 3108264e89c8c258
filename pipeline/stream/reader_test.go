package stream

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// fakeKinesis is one stream for shardReader tests, scripted to show what the emulator cannot:
// records trimmed past the retention period and closed shards Kinesis has deleted.
type fakeKinesis struct {
	mu        sync.Mutex
	retention time.Duration
	shards    map[string]*fakeShard
	requests  []string // GetShardIterator requests: "TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER 0003", ...
}

type fakeShard struct {
	records []string // sequence numbers, in order; a record's data is its sequence number
	trimmed int      // records[:trimmed] are past the retention period
	closed  bool
	gone    bool // deleted: not listed, ResourceNotFoundException
	// refuseTrimmed makes GetShardIterator refuse a trimmed sequence number
	// (InvalidArgumentException); otherwise it returns an iterator into the trimmed range that
	// reads empty batches a retention period behind, forever.
	refuseTrimmed bool
	emptyReads    int           // this many GetRecords return nothing, emptyBehind behind, first
	emptyBehind   time.Duration //
	expireReads   int           // then this many fail with ExpiredIteratorException
	vanishAfter   int           // the shard is deleted after this many GetRecords (0: never)
	reads         int
}

func seqs(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprintf("%04d", i))
	}
	return s
}

func (f *fakeKinesis) shard(id string) (*fakeShard, error) {
	s, ok := f.shards[id]
	if !ok || s.gone {
		return nil, &ktypes.ResourceNotFoundException{Message: aws.String("Shard " + id + " in stream s under account 000000000000 does not exist")}
	}
	return s, nil
}

func (f *fakeKinesis) ListShards(_ context.Context, _ *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &kinesis.ListShardsOutput{}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id, s := range f.shards {
			if !s.gone && !yield(id) {
				return
			}
		}
	}) {
		out.Shards = append(out.Shards, ktypes.Shard{ShardId: aws.String(id)})
	}
	return out, nil
}

func (f *fakeKinesis) DescribeStreamSummary(_ context.Context, _ *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &ktypes.StreamDescriptionSummary{
		RetentionPeriodHours: aws.Int32(int32(f.retention / time.Hour)),
	}}, nil
}

// An iterator is "shard|position"; position -1 lies in the trimmed range.
func (f *fakeKinesis) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	req := string(in.ShardIteratorType)
	if in.StartingSequenceNumber != nil {
		req += " " + *in.StartingSequenceNumber
	}
	f.requests = append(f.requests, req)
	s, err := f.shard(aws.ToString(in.ShardId))
	if err != nil {
		return nil, err
	}
	var pos int
	switch in.ShardIteratorType {
	case ktypes.ShardIteratorTypeTrimHorizon:
		pos = s.trimmed
	case ktypes.ShardIteratorTypeLatest:
		pos = len(s.records)
	case ktypes.ShardIteratorTypeAfterSequenceNumber:
		i := slices.Index(s.records, aws.ToString(in.StartingSequenceNumber))
		switch {
		case i < 0:
			return nil, &ktypes.InvalidArgumentException{Message: aws.String("StartingSequenceNumber is invalid")}
		case i < s.trimmed && s.refuseTrimmed:
			return nil, &ktypes.InvalidArgumentException{Message: aws.String("StartingSequenceNumber " + *in.StartingSequenceNumber + " is no longer available")}
		case i < s.trimmed:
			pos = -1
		default:
			pos = i + 1
		}
	default:
		return nil, fmt.Errorf("fake: iterator type %s", in.ShardIteratorType)
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(fmt.Sprintf("%s|%d", *in.ShardId, pos))}, nil
}

func (f *fakeKinesis) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, p, _ := strings.Cut(aws.ToString(in.ShardIterator), "|")
	pos, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("fake: iterator %q", aws.ToString(in.ShardIterator))
	}
	s, err := f.shard(id)
	if err != nil {
		return nil, err
	}
	s.reads++
	if s.vanishAfter > 0 && s.reads > s.vanishAfter {
		s.gone = true
		return nil, &ktypes.ResourceNotFoundException{Message: aws.String("Shard " + id + " does not exist")}
	}
	same := &kinesis.GetRecordsOutput{NextShardIterator: in.ShardIterator}
	switch {
	case pos < 0:
		same.MillisBehindLatest = aws.Int64(f.retention.Milliseconds())
		return same, nil
	case s.emptyReads > 0:
		s.emptyReads--
		same.MillisBehindLatest = aws.Int64(s.emptyBehind.Milliseconds())
		return same, nil
	case s.expireReads > 0:
		s.expireReads--
		return nil, &ktypes.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	}
	end := min(pos+int(aws.ToInt32(in.Limit)), len(s.records))
	out := &kinesis.GetRecordsOutput{MillisBehindLatest: aws.Int64(0)}
	for _, seq := range s.records[pos:end] {
		out.Records = append(out.Records, ktypes.Record{SequenceNumber: aws.String(seq), PartitionKey: aws.String("k"), Data: []byte(seq)})
	}
	if !s.closed || end < len(s.records) {
		out.NextShardIterator = aws.String(fmt.Sprintf("%s|%d", id, end))
	}
	return out, nil
}

func (f *fakeKinesis) iteratorRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

type nopProcessor struct{}

func (nopProcessor) Process(context.Context, Batch) error { return nil }

func newTestReader(t *testing.T, fk KinesisReader, l Lease, limit int) *shardReader {
	t.Helper()
	return newTestReaderEvery(t, fk, l, limit, time.Millisecond)
}

func newTestReaderEvery(t *testing.T, fk KinesisReader, l Lease, limit int, interval time.Duration) *shardReader {
	t.Helper()
	c, err := NewConsumer(fk, nil, ConsumerConfig{
		Stream: "s", LeaseTable: "leases", Processor: nopProcessor{}, BatchLimit: limit, ReadInterval: interval, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	return newShardReader(c, l)
}

// readAll calls next until the shard ends or reads stop yielding records for a while, and
// returns the sequence numbers read and whether the shard ended.
func readAll(t *testing.T, r *shardReader) (got []string, end bool) {
	t.Helper()
	for empty := 0; empty < 20; {
		records, end, err := r.next(t.Context())
		require.NoError(t, err)
		for _, rec := range records {
			got = append(got, aws.ToString(rec.SequenceNumber))
		}
		if end {
			return got, true
		}
		if len(records) == 0 {
			empty++
		}
	}
	return got, false
}

func gaps(t *testing.T, reason string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, retentionGaps.WithLabelValues(reason).Write(&m))
	return m.GetCounter().GetValue()
}

func TestShardReader_RestartsAtTrimHorizonWhenKinesisRefusesTheCheckpoint(t *testing.T) {
	t.Parallel()
	fk := &fakeKinesis{retention: 24 * time.Hour, shards: map[string]*fakeShard{
		"shardId-0": {records: seqs(1, 9), trimmed: 5, refuseTrimmed: true},
	}}
	before := gaps(t, gapCheckpointRefused)
	r := newTestReader(t, fk, Lease{ShardID: "shardId-0", Checkpoint: "0003"}, 100)
	got, _ := readAll(t, r)
	require.Equal(t, seqs(6, 9), got, "everything Kinesis still has, from the trim horizon")
	require.Equal(t, []string{"AFTER_SEQUENCE_NUMBER 0003", "TRIM_HORIZON"}, fk.iteratorRequests())
	require.GreaterOrEqual(t, gaps(t, gapCheckpointRefused)-before, 1.0, "the gap is counted")
}

func TestShardReader_RestartsAtTrimHorizonWhenTheCheckpointIsPastRetention(t *testing.T) {
	t.Parallel()
	// Kinesis accepts the trimmed checkpoint but its iterator reads only empty batches, a
	// retention period behind (harlow/kinesis-consumer#125).
	fk := &fakeKinesis{retention: 48 * time.Hour, shards: map[string]*fakeShard{
		"shardId-0": {records: seqs(1, 9), trimmed: 5},
	}}
	before := gaps(t, gapCheckpointTrimmed)
	r := newTestReader(t, fk, Lease{ShardID: "shardId-0", Checkpoint: "0003"}, 2)
	got, _ := readAll(t, r)
	require.Equal(t, seqs(6, 9), got)
	require.Equal(t, []string{"AFTER_SEQUENCE_NUMBER 0003", "TRIM_HORIZON"}, fk.iteratorRequests())
	require.GreaterOrEqual(t, gaps(t, gapCheckpointTrimmed)-before, 1.0, "the gap is counted")
}

func TestShardReader_KeepsItsCheckpointWhenBehindWithinRetention(t *testing.T) {
	t.Parallel()
	// A day behind on a week-long stream: empty batches while Kinesis catches up are normal,
	// and a restart at TRIM_HORIZON would redeliver a week of records.
	fk := &fakeKinesis{retention: 7 * 24 * time.Hour, shards: map[string]*fakeShard{
		"shardId-0": {records: seqs(1, 9), trimmed: 1, emptyReads: 5, emptyBehind: 24 * time.Hour},
	}}
	r := newTestReader(t, fk, Lease{ShardID: "shardId-0", Checkpoint: "0003"}, 100)
	got, _ := readAll(t, r)
	require.Equal(t, seqs(4, 9), got, "the records after the checkpoint, none before")
	require.Equal(t, []string{"AFTER_SEQUENCE_NUMBER 0003"}, fk.iteratorRequests())
}

func TestShardReader_ContinuesAfterTheLastRecordWhenTheIteratorExpires(t *testing.T) {
	t.Parallel()
	fk := &fakeKinesis{retention: 24 * time.Hour, shards: map[string]*fakeShard{
		"shardId-0": {records: seqs(1, 6), closed: true},
	}}
	r := newTestReader(t, fk, Lease{ShardID: "shardId-0"}, 3)
	records, end, err := r.next(t.Context())
	require.NoError(t, err)
	require.False(t, end)
	require.Len(t, records, 3)
	fk.mu.Lock()
	fk.shards["shardId-0"].expireReads = 1
	fk.mu.Unlock()
	got, end := readAll(t, r)
	require.True(t, end, "the closed shard is read to its end")
	require.Equal(t, seqs(4, 6), got, "no record twice, none skipped")
	require.Equal(t, []string{"TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER 0003"}, fk.iteratorRequests())
}

func TestShardReader_FinishesAShardKinesisHasDeleted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		shard *fakeShard
		want  []string
	}{
		{"gone before the first read", &fakeShard{gone: true}, nil},
		{"deleted while being read", &fakeShard{records: seqs(1, 4), closed: true, vanishAfter: 1}, seqs(1, 2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fk := &fakeKinesis{retention: 24 * time.Hour, shards: map[string]*fakeShard{"shardId-0": tt.shard, "shardId-1": {}}}
			before := gaps(t, gapShardGone)
			r := newTestReader(t, fk, Lease{ShardID: "shardId-0"}, 2)
			got, end := readAll(t, r)
			require.True(t, end, "the shard is finished, so its children can start")
			require.Equal(t, tt.want, got)
			require.GreaterOrEqual(t, gaps(t, gapShardGone)-before, 1.0, "the gap is counted")
		})
	}
}

func TestShardReader_DoesNotFinishAShardTheStreamStillLists(t *testing.T) {
	t.Parallel()
	fk := &fakeKinesis{retention: 24 * time.Hour, shards: map[string]*fakeShard{"shardId-0": {records: seqs(1, 3)}}}
	// ResourceNotFound for a shard that ListShards still names: an error, not an end.
	r := newTestReader(t, &listsAnyway{fakeKinesis: fk, id: "shardId-1"}, Lease{ShardID: "shardId-1"}, 10)
	_, end, err := r.next(t.Context())
	require.ErrorIs(t, err, errShardGone)
	require.False(t, end, "a listed shard is never marked finished")
}

// listsAnyway lists id although GetShardIterator does not know it.
type listsAnyway struct {
	*fakeKinesis
	id string
}

func (l *listsAnyway) ListShards(ctx context.Context, in *kinesis.ListShardsInput, opts ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	out, err := l.fakeKinesis.ListShards(ctx, in, opts...)
	if err == nil {
		out.Shards = append(out.Shards, ktypes.Shard{ShardId: aws.String(l.id)})
	}
	return out, err
}

func TestShardReader_KeepsWithinFiveReadsPerSecondPerShard(t *testing.T) {
	t.Parallel()
	fk := &fakeKinesis{retention: 24 * time.Hour, shards: map[string]*fakeShard{"s0": {records: seqs(1, 6)}}}
	const interval = 30 * time.Millisecond
	r := newTestReaderEvery(t, fk, Lease{ShardID: "s0"}, 1, interval)
	start := time.Now()
	var got []string
	for len(got) < 6 {
		records, _, err := r.next(t.Context())
		require.NoError(t, err)
		for _, rec := range records {
			got = append(got, aws.ToString(rec.SequenceNumber))
		}
	}
	require.Equal(t, seqs(1, 6), got)
	// Six reads of one record each: at least five intervals between the first and the last.
	require.GreaterOrEqual(t, time.Since(start), 5*interval, "GetRecords calls are spaced by ReadInterval")
}
