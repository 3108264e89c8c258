package pipeline

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed deadletters.sql
var deadLetterSQL string

// deadLetterQueries are the named queries of deadletters.sql.
var deadLetterQueries = parseNamedQueries(deadLetterSQL)

func parseNamedQueries(src string) map[string]string {
	out := map[string]string{}
	for _, block := range strings.Split(src, "-- name: ")[1:] {
		name, body, _ := strings.Cut(block, "\n")
		out[strings.TrimSpace(name)] = strings.TrimSpace(body)
	}
	return out
}

// Dead-letter sources of the event path.
const (
	SourceAPI = "events.api"
	SourceCLI = "events.cli"
)

// ErrDeadLetterNotFound is returned by DeadLetters.Get for an unknown id.
var ErrDeadLetterNotFound = errors.New("dead letter not found")

// DeadLetter is one refused input, raw, with the reason.
type DeadLetter struct {
	ID         int64
	Source     string
	Reason     string
	Payload    []byte
	CreatedAt  time.Time
	ReplayedAt *time.Time
}

// DeadLetters stores refused inputs in Postgres (dead_letters). Safe for concurrent use.
type DeadLetters struct{ pool *pgxpool.Pool }

// NewDeadLetters returns the dead-letter store over pool.
func NewDeadLetters(pool *pgxpool.Pool) *DeadLetters { return &DeadLetters{pool: pool} }

// Put keeps payload with the reason it was refused. It implements DeadLetterWriter.
func (d *DeadLetters) Put(ctx context.Context, source, reason string, payload []byte) error {
	_, err := d.Insert(ctx, source, reason, payload)
	return err
}

// Insert is Put returning the new row's id.
func (d *DeadLetters) Insert(ctx context.Context, source, reason string, payload []byte) (int64, error) {
	if payload == nil {
		payload = []byte{}
	}
	var id int64
	if err := d.pool.QueryRow(ctx, deadLetterQueries["insert"], source, reason, payload).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert dead letter: %w", err)
	}
	eventsRejected.WithLabelValues(source).Inc()
	return id, nil
}

// DeadLetterFilter selects dead letters for List. Zero values mean: any source, newest first,
// not yet replayed, 50 rows.
type DeadLetterFilter struct {
	Source          string
	BeforeID        int64 // keyset pagination: only ids below this
	IncludeReplayed bool
	Limit           int
}

// List returns dead letters newest first.
func (d *DeadLetters) List(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := d.pool.Query(ctx, deadLetterQueries["list"], f.Source, f.BeforeID, f.IncludeReplayed, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Get returns one dead letter or ErrDeadLetterNotFound.
func (d *DeadLetters) Get(ctx context.Context, id int64) (DeadLetter, error) {
	rows, err := d.pool.Query(ctx, deadLetterQueries["get"], id)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("get dead letter %d: %w", id, err)
	}
	dl, err := pgx.CollectExactlyOneRow(rows, scanDeadLetter)
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetter{}, fmt.Errorf("%w: %d", ErrDeadLetterNotFound, id)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("get dead letter %d: %w", id, err)
	}
	return dl, nil
}

// MarkReplayed records that a dead letter was replayed successfully.
func (d *DeadLetters) MarkReplayed(ctx context.Context, id int64) error {
	if _, err := d.pool.Exec(ctx, deadLetterQueries["mark_replayed"], id); err != nil {
		return fmt.Errorf("mark dead letter %d replayed: %w", id, err)
	}
	return nil
}

func scanDeadLetter(row pgx.CollectableRow) (DeadLetter, error) {
	var dl DeadLetter
	err := row.Scan(&dl.ID, &dl.Source, &dl.Reason, &dl.Payload, &dl.CreatedAt, &dl.ReplayedAt)
	return dl, err
}

// ReplayResult is the outcome of replaying one dead letter.
type ReplayResult struct {
	ID       int64
	Accepted bool
	Reason   string // why it is still refused, when not accepted
}

// Replay re-validates dead letters and sends the valid ones to the stream, marking them
// replayed. Still-invalid ones stay as they are (their new reason is in the result).
func (d *DeadLetters) Replay(ctx context.Context, ids []int64, producer *Producer, opts DecodeOptions) ([]ReplayResult, error) {
	results := make([]ReplayResult, 0, len(ids))
	for _, id := range ids {
		dl, err := d.Get(ctx, id)
		if err != nil {
			return results, err
		}
		ev, err := DecodeEvent(dl.Payload, opts)
		if err != nil {
			results = append(results, ReplayResult{ID: id, Reason: err.Error()})
			continue
		}
		res, err := producer.Send(ctx, []Event{ev})
		if err != nil {
			return results, err
		}
		if res[0] != nil {
			results = append(results, ReplayResult{ID: id, Reason: res[0].Error()})
			continue
		}
		if err := d.MarkReplayed(ctx, id); err != nil {
			return results, err
		}
		results = append(results, ReplayResult{ID: id, Accepted: true})
	}
	return results, nil
}
