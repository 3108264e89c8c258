package events

import (
	"context"
)

// ReplayStore is what Replay needs of the dead-letter store (*deadletter.Store implements it).
type ReplayStore interface {
	Payload(ctx context.Context, id int64) ([]byte, error)
	MarkReplayed(ctx context.Context, id int64) error
}

// ReplayResult is the outcome of replaying one dead letter.
type ReplayResult struct {
	ID       int64
	Accepted bool
	Reason   string // why it is still refused, when not accepted
}

// Replay re-validates dead letters and sends the valid ones to the stream, marking them
// replayed. Still-invalid ones stay as they are (their new reason is in the result).
func Replay(ctx context.Context, store ReplayStore, s RecordSender, ids []int64, opts DecodeOptions) ([]ReplayResult, error) {
	results := make([]ReplayResult, 0, len(ids))
	for _, id := range ids {
		payload, err := store.Payload(ctx, id)
		if err != nil {
			return results, err
		}
		ev, err := Decode(payload, opts)
		if err != nil {
			results = append(results, ReplayResult{ID: id, Reason: err.Error()})
			continue
		}
		res, err := Publish(ctx, s, []Event{ev})
		if err != nil {
			return results, err
		}
		if res[0] != nil {
			results = append(results, ReplayResult{ID: id, Reason: res[0].Error()})
			continue
		}
		if err := store.MarkReplayed(ctx, id); err != nil {
			return results, err
		}
		results = append(results, ReplayResult{ID: id, Accepted: true})
	}
	return results, nil
}
