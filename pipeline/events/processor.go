package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tailor-email/tailor/pipeline/stream"
)

// Sink applies a batch of events to profiles. Apply returns only when the effects are durable
// (the consumer checkpoints after it); it must be idempotent per event id, because a batch is
// redelivered after a crash or a lease steal. It is called concurrently for different shards.
type Sink interface {
	Apply(ctx context.Context, events []Event) error
}

// AppliedBatch describes one applied batch, for ProcessorConfig.AfterApply.
type AppliedBatch struct {
	ShardID  string
	Events   []Event
	Arrivals []time.Time // ApproximateArrivalTimestamp of each event's record
	Applied  time.Time
}

// ProcessorConfig configures a Processor.
type ProcessorConfig struct {
	// Sink applies the valid events. Required.
	Sink Sink
	// DeadLetters keeps the records that are not valid events (source SourceStream). Required:
	// nothing is dropped silently.
	DeadLetters DeadLetterWriter
	// AfterApply, when set, is called after each batch is durable (tests, benchmarks).
	AfterApply func(AppliedBatch)
}

// Processor turns stream records into events for a Sink: it decodes every record with the
// same rules as ingestion (except the age bound: events wait in the stream), keeps the
// records that are not valid events as dead letters, and applies the rest. It implements
// stream.Processor and is safe for concurrent use.
type Processor struct{ cfg ProcessorConfig }

var _ stream.Processor = (*Processor)(nil)

// NewProcessor returns a Processor.
func NewProcessor(cfg ProcessorConfig) (*Processor, error) {
	if cfg.Sink == nil || cfg.DeadLetters == nil {
		return nil, errors.New("events processor: Sink and DeadLetters are required")
	}
	return &Processor{cfg: cfg}, nil
}

// streamDecode bounds events read back from the stream: no age bound (they sat in the stream
// for a while), the usual future bound, and the size of a Kinesis record rather than the
// contract's event limit (the normalised form of an accepted event may be a little longer
// than what the client sent, and an accepted event must not become a dead letter).
var streamDecode = DecodeOptions{MaxAge: 100 * 365 * 24 * time.Hour, MaxBytes: stream.PutRecordMaxBytes}

// Process implements stream.Processor. It returns when the batch's effects are durable: every
// invalid record is in the dead-letter store and every valid event applied.
func (p *Processor) Process(ctx context.Context, b stream.Batch) error {
	evs := make([]Event, 0, len(b.Records))
	arrivals := make([]time.Time, 0, len(b.Records))
	for _, r := range b.Records {
		ev, err := Event{}, r.Err // a corrupt aggregate
		if err == nil {
			ev, err = Decode(r.Data, streamDecode)
		}
		if err != nil {
			if err := p.cfg.DeadLetters.Put(ctx, SourceStream, err.Error(), r.Data); err != nil {
				return fmt.Errorf("dead-letter record %s of %s: %w", r.SequenceNumber, b.ShardID, err)
			}
			continue
		}
		evs = append(evs, ev)
		arrivals = append(arrivals, r.Arrival)
	}
	if len(evs) > 0 {
		if err := p.cfg.Sink.Apply(ctx, evs); err != nil {
			return fmt.Errorf("apply %d events from %s: %w", len(evs), b.ShardID, err)
		}
	}
	eventsApplied.Add(float64(len(evs)))
	if p.cfg.AfterApply != nil {
		p.cfg.AfterApply(AppliedBatch{ShardID: b.ShardID, Events: evs, Arrivals: arrivals, Applied: time.Now()})
	}
	return nil
}
