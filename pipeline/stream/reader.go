package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tailor-email/tailor/internal/ctxtime"
	"github.com/tailor-email/tailor/internal/ddb"
)

// KinesisReader is the part of the Kinesis client the consumer uses; *kinesis.Client
// implements it. Tests substitute a fake to script what the emulator cannot show: records
// trimmed past the retention period and closed shards that Kinesis has deleted.
type KinesisReader interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

var _ KinesisReader = (*kinesis.Client)(nil)

// retentionMin is the shortest retention period Kinesis allows: an iterator less far behind
// than this cannot point at trimmed data, so the retention need not be looked up.
const retentionMin = 24 * time.Hour

// retentionTTL is how long a looked-up retention period is trusted.
const retentionTTL = 5 * time.Minute

// errShardGone is a ResourceNotFoundException for the shard itself.
var errShardGone = errors.New("shard not found")

// retentionCache remembers the stream's retention period (DescribeStreamSummary), which the
// shard readers of one consumer share. Safe for concurrent use.
type retentionCache struct {
	mu sync.Mutex
	d  time.Duration
	at time.Time
}

func (c *Consumer) retention(ctx context.Context) (time.Duration, error) {
	c.ret.mu.Lock()
	defer c.ret.mu.Unlock()
	if c.ret.d > 0 && time.Since(c.ret.at) < retentionTTL {
		return c.ret.d, nil
	}
	out, err := c.kinesis.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(c.cfg.Stream)})
	if err != nil {
		return 0, fmt.Errorf("describe stream %s: %w", c.cfg.Stream, err)
	}
	if out.StreamDescriptionSummary == nil || out.StreamDescriptionSummary.RetentionPeriodHours == nil {
		return 0, fmt.Errorf("describe stream %s: no retention period", c.cfg.Stream)
	}
	c.ret.d, c.ret.at = time.Duration(*out.StreamDescriptionSummary.RetentionPeriodHours)*time.Hour, time.Now()
	return c.ret.d, nil
}

// shardReader reads one shard in order. It positions its iterator after the last record read
// (at first: after the lease's checkpoint, else at the start position), gets a new one when
// the iterator expires, and handles the two ways the retention period catches up with a
// consumer:
//
//   - The checkpoint is older than the trim horizon. Kinesis may refuse it
//     (InvalidArgumentException from GetShardIterator) or hand out an iterator that reads
//     nothing but empty batches MillisBehindLatest = retention behind. Either way the reader
//     restarts at TRIM_HORIZON, which delivers every record the checkpoint's iterator could
//     (nothing older is left), so it never skips more than Kinesis already dropped, and at
//     worst redelivers (harmless: processors are idempotent).
//   - The shard is gone: a closed shard is deleted once its records are past the retention
//     period (ResourceNotFoundException). After a listing confirms it, the reader reports
//     the shard's end, so its children start instead of waiting for it forever.
//
// Both are logged as errors and counted (tailor_consumer_retention_gaps_total): records in
// the gap, if any, are lost and nothing can bring them back.
type shardReader struct {
	c       *Consumer
	shardID string

	iter  *string
	after string // sequence number to continue after; empty: start at fromStart or LATEST
	// fromStart: without after, start at TRIM_HORIZON rather than LATEST.
	fromStart bool
	// atCheckpoint: the iterator was positioned after a sequence number (the checkpoint, or
	// the last record read before the iterator expired) and has read no record since, so an
	// empty batch a retention period behind means that position is past the trim horizon.
	atCheckpoint bool
	attempt      int           // consecutive failed GetRecords
	lastRead     time.Time     // the last GetRecords call (ConsumerConfig.ReadInterval)
	behindMs     *atomic.Int64 // where the last MillisBehindLatest goes (the worker's); may be nil
}

func newShardReader(c *Consumer, l Lease) *shardReader {
	return &shardReader{
		c: c, shardID: l.ShardID, after: l.Checkpoint,
		// Children of a split or merge start at their beginning, after their parents.
		fromStart: len(l.Parents) > 0 || c.cfg.StartPosition == StartTrimHorizon,
	}
}

// next reads the next batch, possibly empty. end reports that the shard is finished: closed
// and read to its end, or gone from the stream.
func (r *shardReader) next(ctx context.Context) (records []ktypes.Record, end bool, err error) {
	for {
		if r.iter == nil {
			if err := r.position(ctx); err != nil {
				if errors.Is(err, errShardGone) {
					return r.gone(ctx, err)
				}
				return nil, false, err
			}
		}
		if wait := time.Until(r.lastRead.Add(r.c.cfg.ReadInterval)); wait > 0 {
			if err := ctxtime.Sleep(ctx, wait); err != nil {
				return nil, false, err
			}
		}
		r.lastRead = time.Now()
		out, err := r.c.kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: r.iter, Limit: aws.Int32(int32(r.c.cfg.BatchLimit))})
		if err != nil {
			var expired *ktypes.ExpiredIteratorException
			var notFound *ktypes.ResourceNotFoundException
			var thr *ktypes.ProvisionedThroughputExceededException
			switch {
			case ctx.Err() != nil:
				return nil, false, ctx.Err()
			case errors.As(err, &expired):
				r.iter = nil
				continue
			case errors.As(err, &notFound):
				return r.gone(ctx, fmt.Errorf("get records from %s: %w: %w", r.shardID, errShardGone, err))
			case errors.As(err, &thr) || r.attempt < 8:
				r.attempt++
				if err := ctxtime.Sleep(ctx, ddb.Backoff(r.attempt)); err != nil {
					return nil, false, err
				}
				continue
			default:
				return nil, false, fmt.Errorf("get records from %s: %w", r.shardID, err)
			}
		}
		r.attempt = 0
		if out.MillisBehindLatest != nil {
			iteratorAge.WithLabelValues(r.c.cfg.Stream, r.shardID).Set(float64(*out.MillisBehindLatest) / 1000)
			if r.behindMs != nil {
				r.behindMs.Store(*out.MillisBehindLatest)
			}
		}
		if len(out.Records) == 0 && r.atCheckpoint && r.pastRetention(ctx, out.MillisBehindLatest) {
			r.c.log.Error("checkpoint is older than the stream's retention period: restarting the shard at TRIM_HORIZON; records between the checkpoint and the trim horizon, if any, were lost",
				"shard", r.shardID, "checkpoint", r.after, "millis_behind_latest", aws.ToInt64(out.MillisBehindLatest))
			retentionGaps.WithLabelValues(gapCheckpointTrimmed).Inc()
			r.iter, r.after, r.fromStart, r.atCheckpoint = nil, "", true, false
			continue
		}
		if len(out.Records) > 0 {
			r.after, r.atCheckpoint = aws.ToString(out.Records[len(out.Records)-1].SequenceNumber), false
		}
		r.iter = out.NextShardIterator
		return out.Records, out.NextShardIterator == nil, nil
	}
}

// position gets an iterator: after r.after, else at TRIM_HORIZON or LATEST.
func (r *shardReader) position(ctx context.Context) error {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(r.c.cfg.Stream), ShardId: aws.String(r.shardID)}
	switch {
	case r.after != "":
		in.ShardIteratorType, in.StartingSequenceNumber = ktypes.ShardIteratorTypeAfterSequenceNumber, aws.String(r.after)
	case r.fromStart:
		in.ShardIteratorType = ktypes.ShardIteratorTypeTrimHorizon
	default:
		in.ShardIteratorType = ktypes.ShardIteratorTypeLatest
	}
	out, err := r.c.kinesis.GetShardIterator(ctx, in)
	var notFound *ktypes.ResourceNotFoundException
	var invalid *ktypes.InvalidArgumentException
	switch {
	case err == nil:
		r.iter, r.atCheckpoint = out.ShardIterator, r.after != ""
		return nil
	case errors.As(err, &notFound):
		return fmt.Errorf("shard iterator for %s: %w: %w", r.shardID, errShardGone, err)
	case errors.As(err, &invalid) && r.after != "":
		// The only argument Kinesis can object to here is the sequence number: trimmed (past
		// the retention period) or from an earlier stream of the same name. TRIM_HORIZON
		// is then the earliest record that can still be read.
		r.c.log.Error("Kinesis refused the checkpoint: restarting the shard at TRIM_HORIZON; records between the checkpoint and the trim horizon, if any, were lost",
			"shard", r.shardID, "checkpoint", r.after, "err", err)
		retentionGaps.WithLabelValues(gapCheckpointRefused).Inc()
		r.after, r.fromStart = "", true
		return r.position(ctx)
	default:
		return fmt.Errorf("shard iterator for %s: %w", r.shardID, err)
	}
}

// pastRetention reports whether an iterator MillisBehindLatest behind points before the trim
// horizon.
func (r *shardReader) pastRetention(ctx context.Context, millisBehind *int64) bool {
	if millisBehind == nil {
		return false
	}
	behind := time.Duration(*millisBehind) * time.Millisecond
	if behind < retentionMin {
		return false
	}
	ret, err := r.c.retention(ctx)
	if err != nil {
		r.c.log.Warn("cannot tell whether the checkpoint is past the retention period", "shard", r.shardID, "err", err)
		return false
	}
	return behind >= ret
}

// gone handles a ResourceNotFoundException for the shard: when a fresh listing of the stream
// confirms that the shard is no longer there, the shard is finished (end); otherwise cause
// is returned and the worker retries later.
func (r *shardReader) gone(ctx context.Context, cause error) ([]ktypes.Record, bool, error) {
	shards, err := r.c.listShards(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("%w (confirming with a listing: %w)", cause, err)
	}
	for _, s := range shards {
		if aws.ToString(s.ShardId) == r.shardID {
			return nil, false, cause
		}
	}
	r.c.log.Error("shard is gone from the stream (a closed shard is deleted after the retention period): marking it finished so its children start; records of it not read before were lost",
		"shard", r.shardID, "checkpoint", r.after, "err", cause)
	retentionGaps.WithLabelValues(gapShardGone).Inc()
	return nil, true, nil
}
