package stream

import (
	"cmp"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// Kinesis PutRecords limits the producer keeps to. Sizes count data and partition key
// together, as Kinesis does. AWS has since raised its ceilings (10 MiB per call, records up to
// 10 MiB on a stream whose maximum record size was raised); these are the limits every stream
// and the emulators accept (kinesalite refuses requests over 7 MiB, base64 included).
const (
	PutRecordsMaxRecords = 500     // records per call
	PutRecordsMaxBytes   = 5 << 20 // per call
	PutRecordMaxBytes    = 1 << 20 // per record: a stream's default maximum record size
	PartitionKeyMaxLen   = 256     // Unicode characters
)

// Producer defaults.
const (
	ProducerMaxAttemptsDefault = 10
	ProducerBaseDelayDefault   = 50 * time.Millisecond
	ProducerMaxDelayDefault    = 2 * time.Second
	// ShardMapTTLDefault bounds how long after a reshard an aggregating producer may still
	// plan by the old shards (every aggregate of a closed shard then goes to one child, so a
	// customer's events may be read out of order across the two children for that long).
	// ListShards allows 1 000 calls/s per stream.
	ShardMapTTLDefault = time.Second
)

// EnsureStream creates the stream with shards shards when it does not exist and waits until it
// is ACTIVE. Idempotent; an existing stream keeps its shard count. It asks
// DescribeStreamSummary first, so a process whose IAM role may not create streams starts
// against an existing one.
func EnsureStream(ctx context.Context, client *kinesis.Client, name string, shards int) error {
	sum, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	var nf *ktypes.ResourceNotFoundException
	switch {
	case err == nil && sum.StreamDescriptionSummary != nil && sum.StreamDescriptionSummary.StreamStatus == ktypes.StreamStatusActive:
		return nil
	case err == nil:
		return WaitStreamActive(ctx, client, name) // being created or resharded
	case !errors.As(err, &nf):
		return fmt.Errorf("describe stream %s: %w", name, err)
	}
	_, err = client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(max(shards, 1)))})
	var inUse *ktypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return WaitStreamActive(ctx, client, name)
}

// WaitStreamActive polls until the stream is ACTIVE (after a create, split or merge).
func WaitStreamActive(ctx context.Context, client *kinesis.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for attempt := 0; ; attempt++ {
		out, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		var nf *ktypes.ResourceNotFoundException
		switch {
		case err == nil && out.StreamDescriptionSummary.StreamStatus == ktypes.StreamStatusActive:
			return nil
		case err != nil && !errors.As(err, &nf):
			return fmt.Errorf("describe stream %s: %w", name, err)
		}
		if err := ctxtime.Sleep(ctx, min(time.Duration(attempt+1)*20*time.Millisecond, 500*time.Millisecond)); err != nil {
			return fmt.Errorf("wait for stream %s to be active: %w", name, err)
		}
	}
}

// KinesisPutter is the part of the Kinesis client the producer uses.
type KinesisPutter interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// ProducerConfig configures a Producer. Zero values mean defaults.
type ProducerConfig struct {
	// Stream is the Kinesis stream name. Required.
	Stream string
	// MaxAttempts bounds the tries per record (partial failures, throttling). Default 10.
	MaxAttempts int
	// BaseDelay is the first retry's backoff; it doubles per attempt, with full jitter. Default 50ms.
	BaseDelay time.Duration
	// MaxDelay caps one backoff. Default 2s.
	MaxDelay time.Duration
	// Aggregate packs the records of one Send that go to one shard into KPL aggregated
	// records of at most AggregateMaxBytes (see Deaggregate), which the consumer unpacks. The
	// client must also be a ShardLister. A Send whose shard map cannot be read puts its records
	// one by one.
	Aggregate bool
	// ShardMapTTL is how long an aggregating producer trusts its shard map before it lists the
	// shards again (besides after a put that landed elsewhere). Default ShardMapTTLDefault.
	ShardMapTTL time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	c.MaxAttempts = cmp.Or(c.MaxAttempts, ProducerMaxAttemptsDefault)
	c.BaseDelay = cmp.Or(c.BaseDelay, ProducerBaseDelayDefault)
	c.MaxDelay = cmp.Or(c.MaxDelay, ProducerMaxDelayDefault)
	c.ShardMapTTL = cmp.Or(c.ShardMapTTL, ShardMapTTLDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Record is one Kinesis record. Records handed to a Processor also carry their sequence number
// and arrival time; the producer uses PartitionKey and Data only.
type Record struct {
	PartitionKey   string
	Data           []byte
	SequenceNumber string
	Arrival        time.Time // ApproximateArrivalTimestamp
	// Err is set on a record the consumer could not unpack (a corrupt KPL aggregate, matching
	// ErrBadAggregate); Data is then the whole Kinesis record, for a dead letter.
	Err error
}

// Producer writes records to Kinesis with PutRecords. Records with one partition key stay in
// one shard, in order. Safe for concurrent use.
type Producer struct {
	client KinesisPutter
	cfg    ProducerConfig
	shards *shardMap // with Aggregate
}

// NewProducer returns a producer for cfg.Stream.
func NewProducer(client KinesisPutter, cfg ProducerConfig) (*Producer, error) {
	if cfg.Stream == "" {
		return nil, errors.New("producer: Stream is required")
	}
	p := &Producer{client: client, cfg: cfg.withDefaults()}
	if cfg.Aggregate {
		lister, ok := client.(ShardLister)
		if !ok {
			return nil, errors.New("producer: Aggregate needs a client that lists shards (ListShards)")
		}
		p.shards = &shardMap{lister: lister, stream: cfg.Stream, ttl: p.cfg.ShardMapTTL}
	}
	return p, nil
}

// Send puts records in calls of at most 500 records / 5 MB, retrying failed records (partial
// failures and throttling) with exponential backoff and full jitter. It returns one error per
// record (nil: the record is durable in the stream) and an error only when ctx ends. Records of
// one call may land out of order relative to each other after a retry; the event aggregation
// is order-insensitive within its windows, so that is safe. With Aggregate, the records of one
// shard go in KPL aggregated records, and an aggregate's result is each of its records'.
func (p *Producer) Send(ctx context.Context, records []Record) ([]error, error) {
	results := make([]error, len(records))
	for i, r := range records {
		switch {
		case r.PartitionKey == "":
			results[i] = errors.New("put record: empty partition key")
		case utf8.RuneCountInString(r.PartitionKey) > PartitionKeyMaxLen:
			results[i] = fmt.Errorf("put record: partition key of %d characters, the Kinesis limit is %d", utf8.RuneCountInString(r.PartitionKey), PartitionKeyMaxLen)
		case len(r.Data)+len(r.PartitionKey) > PutRecordMaxBytes:
			results[i] = fmt.Errorf("put record: %d bytes with the partition key, the Kinesis limit is %d", len(r.Data)+len(r.PartitionKey), PutRecordMaxBytes)
		}
	}
	entries, members, predicted := p.plan(ctx, records, results)
	entryResults := make([]error, len(entries))
	err := p.sendEntries(ctx, entries, predicted, entryResults)
	for j, m := range members {
		for _, i := range m {
			results[i] = entryResults[j]
		}
	}
	return results, err
}

// sendEntries puts entries in calls of at most 500 entries / 5 MB, one result per entry.
func (p *Producer) sendEntries(ctx context.Context, entries []ktypes.PutRecordsRequestEntry, predicted []string, results []error) error {
	start := 0
	for start < len(entries) {
		end, size := start, 0
		for end < len(entries) && end-start < PutRecordsMaxRecords {
			n := len(entries[end].Data) + len(aws.ToString(entries[end].PartitionKey))
			if size+n > PutRecordsMaxBytes && end > start {
				break
			}
			size += n
			end++
		}
		idx := make([]int, 0, end-start)
		for i := start; i < end; i++ {
			idx = append(idx, i)
		}
		if err := p.put(ctx, entries, predicted, idx, results); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// plan turns the valid records (results[i] nil) into PutRecords entries: one per record, or with
// Aggregate one per run of a shard's records up to AggregateMaxBytes (a lone record stays
// plain). members[j] are the records of entry j; predicted[j] is its shard ("" unknown).
func (p *Producer) plan(ctx context.Context, records []Record, results []error) (entries []ktypes.PutRecordsRequestEntry, members [][]int, predicted []string) {
	plain := func(i int) {
		entries = append(entries, ktypes.PutRecordsRequestEntry{Data: records[i].Data, PartitionKey: aws.String(records[i].PartitionKey)})
		members = append(members, []int{i})
	}
	var ranges []shardRange
	if p.shards != nil {
		var err error
		if ranges, err = p.shards.load(ctx); err != nil {
			p.cfg.Logger.Warn("producer: records go one by one, the shard map is unavailable", "error", err)
			producerAggregation.WithLabelValues("unavailable").Inc()
			ranges = nil
		}
	}
	if ranges == nil {
		for i := range records {
			if results[i] == nil {
				plain(i)
			}
		}
		return entries, members, make([]string, len(entries))
	}
	type open struct {
		idx  []int
		size int
	}
	groups := map[int]*open{}
	flush := func(shard int) {
		g := groups[shard]
		delete(groups, shard)
		if len(g.idx) == 1 {
			plain(g.idx[0])
			producerAggregation.WithLabelValues("single").Inc()
		} else {
			producerAggregation.WithLabelValues("aggregated").Inc()
			rs := make([]Record, len(g.idx))
			for k, i := range g.idx {
				rs[k] = records[i]
			}
			// The explicit hash key is the predicted shard's first: the aggregate goes where its
			// records' keys go, and when the map is stale (a reshard) every aggregate of the old
			// shard goes to one of its children, not some here and some there.
			entries = append(entries, ktypes.PutRecordsRequestEntry{Data: aggregate(rs), PartitionKey: aws.String(records[g.idx[0]].PartitionKey),
				ExplicitHashKey: aws.String(ranges[shard].startKey)})
			members = append(members, g.idx)
		}
		predicted = append(predicted, ranges[shard].id)
	}
	var order []int // shards by their first record, so entries keep the records' order per shard
	for i, r := range records {
		if results[i] != nil {
			continue
		}
		n := aggregatedSize(r.PartitionKey, r.Data)
		shard := shardOf(ranges, r.PartitionKey)
		if g := groups[shard]; g != nil && g.size+n > AggregateMaxBytes {
			flush(shard)
		}
		g := groups[shard]
		if g == nil {
			g = &open{size: len(kplMagic) + md5.Size}
			groups[shard] = g
			order = append(order, shard)
		}
		g.idx, g.size = append(g.idx, i), g.size+n
	}
	for _, shard := range order {
		if groups[shard] != nil {
			flush(shard)
		}
	}
	return entries, members, predicted
}

// put sends entries[idx...] until each is accepted or out of attempts. An entry that lands in
// another shard than predicted makes the shard map stale.
func (p *Producer) put(ctx context.Context, entries []ktypes.PutRecordsRequestEntry, predicted []string, idx []int, results []error) error {
	for attempt := 1; len(idx) > 0; attempt++ {
		if attempt > 1 {
			d := min(p.cfg.BaseDelay<<min(attempt-2, 16), p.cfg.MaxDelay)
			if err := ctxtime.Sleep(ctx, time.Duration(rand.Int64N(int64(d))+1)); err != nil {
				return fmt.Errorf("put records: %w", err)
			}
		}
		batch := make([]ktypes.PutRecordsRequestEntry, len(idx))
		for j, i := range idx {
			batch[j] = entries[i]
		}
		out, err := p.client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(p.cfg.Stream), Records: batch})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("put records: %w", ctx.Err())
			}
			var thr *ktypes.ProvisionedThroughputExceededException
			var lim *ktypes.LimitExceededException
			retryable := errors.As(err, &thr) || errors.As(err, &lim) || !isClientError(err)
			if !retryable || attempt >= p.cfg.MaxAttempts {
				for _, i := range idx {
					results[i] = fmt.Errorf("put records to %s: %w", p.cfg.Stream, err)
				}
				return nil
			}
			producerRetries.WithLabelValues("call").Inc()
			continue
		}
		var retry []int
		for j, r := range out.Records {
			if r.ErrorCode == nil {
				if want := predicted[idx[j]]; want != "" && aws.ToString(r.ShardId) != want && p.shards != nil {
					p.shards.invalidate()
				}
				continue
			}
			i := idx[j]
			if attempt >= p.cfg.MaxAttempts {
				results[i] = fmt.Errorf("put record to %s: %s: %s", p.cfg.Stream, aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
				continue
			}
			retry = append(retry, i)
		}
		if len(retry) > 0 {
			producerRetries.WithLabelValues("record").Add(float64(len(retry)))
		}
		idx = retry
	}
	return nil
}

// isClientError reports whether err is an API error the caller caused (not worth retrying).
func isClientError(err error) bool {
	var rnf *ktypes.ResourceNotFoundException
	var ia *ktypes.InvalidArgumentException
	return errors.As(err, &rnf) || errors.As(err, &ia)
}
