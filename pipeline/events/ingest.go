package events

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/tailor-email/tailor/pipeline/stream"
)

// Ingestion limits. A batch of MaxBatchEvents events of MaxEventBytes each, with the commas or
// newlines between them and an array's brackets, fits in MaxBatchBytes, so every batch that
// is valid event by event is also accepted as a whole.
const (
	MaxBatchEvents = 500
	MaxBatchBytes  = MaxBatchEvents*(MaxEventBytes+2) + 2
)

// Dead-letter sources of the event path.
const (
	SourceAPI    = "events.api"    // POST /v1/events
	SourceCLI    = "events.cli"    // tailor events send
	SourceStream = "events.stream" // a record on the stream that is not a valid event
)

// DeadLetterWriter keeps a refused input with its reason (*deadletter.Store implements it).
type DeadLetterWriter interface {
	Put(ctx context.Context, source, reason string, payload []byte) error
}

// RecordSender puts records on the stream and reports one error per record
// (*stream.Producer implements it).
type RecordSender interface {
	Send(ctx context.Context, records []stream.Record) ([]error, error)
}

// Record is the stream record of a normalised event: its JSON, partitioned by profile id so a
// customer's events stay in one shard, in order.
func Record(ev Event) (stream.Record, error) {
	data, err := ev.MarshalJSON()
	if err != nil {
		return stream.Record{}, err
	}
	return stream.Record{PartitionKey: ev.ProfileID(), Data: data}, nil
}

// Publish sends events to the stream and returns one error per event (nil: durable in the
// stream), and an error only when ctx ends.
func Publish(ctx context.Context, s RecordSender, evs []Event) ([]error, error) {
	results := make([]error, len(evs))
	records := make([]stream.Record, 0, len(evs))
	idx := make([]int, 0, len(evs))
	for i, ev := range evs {
		r, err := Record(ev)
		if err != nil {
			results[i] = err
			continue
		}
		records = append(records, r)
		idx = append(idx, i)
	}
	sent, err := s.Send(ctx, records)
	for j, i := range idx {
		if j < len(sent) {
			results[i] = sent[j]
		}
	}
	return results, err
}

// Per-event ingestion outcomes.
const (
	StatusAccepted = "accepted"
	StatusRejected = "rejected"
)

// IngestResult is the outcome for one submitted event.
type IngestResult struct {
	Index   int    `json:"index"`
	EventID string `json:"event_id,omitempty"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
}

// Ingestor validates raw events, sends the valid ones to the stream and dead-letters the rest
// with the raw payload and the reason. Nothing is dropped: an event that fails to reach the
// stream after the producer's retries is dead-lettered too (tailor deadletters replay re-sends
// it). Safe for concurrent use.
type Ingestor struct {
	Stream      RecordSender
	DeadLetters DeadLetterWriter
	// Decode bounds validation; zero values mean Decode's defaults.
	Decode DecodeOptions
}

// Ingest handles one batch of raw events from source (SourceAPI, SourceCLI). It returns one
// result per raw event, in order, and an error only when an outcome could not be recorded
// (the dead-letter store or ctx failed): then the caller must not report success.
func (in *Ingestor) Ingest(ctx context.Context, source string, raws [][]byte) ([]IngestResult, error) {
	results := make([]IngestResult, len(raws))
	var events []Event
	var idx []int
	for i, raw := range raws {
		results[i] = IngestResult{Index: i, EventID: peekEventID(raw)}
		ev, err := Decode(raw, in.Decode)
		if err != nil {
			results[i].Status, results[i].Reason = StatusRejected, err.Error()
			if err := in.DeadLetters.Put(ctx, source, err.Error(), raw); err != nil {
				return results, err
			}
			continue
		}
		results[i].EventID = ev.EventID
		events = append(events, ev)
		idx = append(idx, i)
	}
	if len(events) == 0 {
		return results, nil
	}
	sent, err := Publish(ctx, in.Stream, events)
	for j, i := range idx {
		perr := sent[j]
		if perr == nil && err != nil {
			perr = err
		}
		if perr == nil {
			results[i].Status = StatusAccepted
			continue
		}
		results[i].Status, results[i].Reason = StatusRejected, "not stored, retry later: "+perr.Error()
		// The original bytes, so a replay sees exactly what the client sent.
		if dlErr := in.DeadLetters.Put(context.WithoutCancel(ctx), source, results[i].Reason, raws[i]); dlErr != nil {
			return results, dlErr
		}
	}
	n := 0
	for _, r := range results {
		if r.Status == StatusAccepted {
			n++
		}
	}
	eventsAccepted.WithLabelValues(source).Add(float64(n))
	return results, nil
}

// peekEventID extracts event_id from a payload that may be invalid, for the per-event answer.
func peekEventID(raw []byte) string {
	var v struct {
		EventID any `json:"event_id"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	s, _ := v.EventID.(string)
	if len(s) > MaxIDLen {
		return ""
	}
	return strings.TrimSpace(s)
}

// SplitBatch splits a request body into raw events: a JSON object is one event, a JSON array
// is a batch, and several objects one per line (NDJSON) are a batch too. A body that is none
// of these is a *ValidationError.
func SplitBatch(body []byte) ([][]byte, error) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return nil, invalid("", "empty body: send an event object or an array of events")
	}
	var raws [][]byte
	switch t[0] {
	case '{':
		// NDJSON when every non-empty line starts an object (a pretty-printed object has lines
		// that do not); otherwise one event, which Decode judges as a whole.
		for line := range bytes.Lines(t) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				if line[0] != '{' {
					return [][]byte{t}, nil
				}
				raws = append(raws, line)
			}
		}
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(t, &arr); err != nil {
			return nil, invalid("", "malformed JSON: %s", jsonReason(err))
		}
		for _, r := range arr {
			raws = append(raws, r)
		}
	default:
		return nil, invalid("", "body must be a JSON object (one event), an array or NDJSON (a batch)")
	}
	if len(raws) == 0 {
		return nil, invalid("", "empty batch")
	}
	if len(raws) > MaxBatchEvents {
		return nil, invalid("", "%d events in one batch, the limit is %d", len(raws), MaxBatchEvents)
	}
	return raws, nil
}
