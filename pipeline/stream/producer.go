package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	c.MaxAttempts = cmp.Or(c.MaxAttempts, ProducerMaxAttemptsDefault)
	c.BaseDelay = cmp.Or(c.BaseDelay, ProducerBaseDelayDefault)
	c.MaxDelay = cmp.Or(c.MaxDelay, ProducerMaxDelayDefault)
	return c
}

// Record is one Kinesis record. Records handed to a Processor also carry their sequence number
// and arrival time; the producer uses PartitionKey and Data only.
type Record struct {
	PartitionKey   string
	Data           []byte
	SequenceNumber string
	Arrival        time.Time // ApproximateArrivalTimestamp
}

// Producer writes records to Kinesis with PutRecords. Records with one partition key stay in
// one shard, in order. Safe for concurrent use.
type Producer struct {
	client KinesisPutter
	cfg    ProducerConfig
}

// NewProducer returns a producer for cfg.Stream.
func NewProducer(client KinesisPutter, cfg ProducerConfig) (*Producer, error) {
	if cfg.Stream == "" {
		return nil, errors.New("producer: Stream is required")
	}
	return &Producer{client: client, cfg: cfg.withDefaults()}, nil
}

// Send puts records in calls of at most 500 records / 5 MB, retrying failed records (partial
// failures and throttling) with exponential backoff and full jitter. It returns one error per
// record (nil: the record is durable in the stream) and an error only when ctx ends. Records of
// one call may land out of order relative to each other after a retry; the event aggregation
// is order-insensitive within its windows, so that is safe.
func (p *Producer) Send(ctx context.Context, records []Record) ([]error, error) {
	results := make([]error, len(records))
	entries := make([]ktypes.PutRecordsRequestEntry, len(records))
	for i, r := range records {
		switch {
		case r.PartitionKey == "":
			results[i] = errors.New("put record: empty partition key")
		case utf8.RuneCountInString(r.PartitionKey) > PartitionKeyMaxLen:
			results[i] = fmt.Errorf("put record: partition key of %d characters, the Kinesis limit is %d", utf8.RuneCountInString(r.PartitionKey), PartitionKeyMaxLen)
		case len(r.Data)+len(r.PartitionKey) > PutRecordMaxBytes:
			results[i] = fmt.Errorf("put record: %d bytes with the partition key, the Kinesis limit is %d", len(r.Data)+len(r.PartitionKey), PutRecordMaxBytes)
		}
		entries[i] = ktypes.PutRecordsRequestEntry{Data: r.Data, PartitionKey: aws.String(r.PartitionKey)}
	}
	start := 0
	for start < len(records) {
		end, size := start, 0
		for end < len(records) && end-start < PutRecordsMaxRecords {
			n := len(entries[end].Data) + len(aws.ToString(entries[end].PartitionKey))
			if size+n > PutRecordsMaxBytes && end > start {
				break
			}
			size += n
			end++
		}
		var idx []int
		for i := start; i < end; i++ {
			if results[i] == nil {
				idx = append(idx, i)
			}
		}
		if err := p.put(ctx, entries, idx, results); err != nil {
			return results, err
		}
		start = end
	}
	return results, nil
}

// put sends entries[idx...] until each is accepted or out of attempts.
func (p *Producer) put(ctx context.Context, entries []ktypes.PutRecordsRequestEntry, idx []int, results []error) error {
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
