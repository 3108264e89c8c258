package deadletter

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailor-email/tailor/internal/sqlfile"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// ErrNotFound is returned by Store.Get for an unknown id.
var ErrNotFound = errors.New("dead letter not found")

// deadLetters counts every dead letter once, when it is stored, by source.
var deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tailor_dead_letters_total", Help: "Refused inputs kept in dead_letters, by source (events.api, events.cli, events.stream, cdc, ...).",
}, []string{"source"})

// MetricsCollectors are the dead-letter store's metrics.
func MetricsCollectors() []prometheus.Collector { return []prometheus.Collector{deadLetters} }

// Letter is one refused input, raw, with the reason.
type Letter struct {
	ID         int64      `db:"id"`
	Source     string     `db:"source"`
	Reason     string     `db:"reason"`
	Payload    []byte     `db:"payload"`
	CreatedAt  time.Time  `db:"created_at"`
	ReplayedAt *time.Time `db:"replayed_at"`
}

// Store keeps refused inputs in Postgres (dead_letters). Safe for concurrent use.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns the dead-letter store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Put keeps payload with the reason it was refused. It implements the dead-letter writers of
// pipeline/events and pipeline/cdc.
func (d *Store) Put(ctx context.Context, source, reason string, payload []byte) error {
	_, err := d.Insert(ctx, source, reason, payload)
	return err
}

// Insert is Put returning the new row's id.
func (d *Store) Insert(ctx context.Context, source, reason string, payload []byte) (int64, error) {
	if payload == nil {
		payload = []byte{}
	}
	var id int64
	if err := d.pool.QueryRow(ctx, queries.Get("insert"), source, reason, payload).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert dead letter: %w", err)
	}
	deadLetters.WithLabelValues(source).Inc()
	return id, nil
}

// Filter selects dead letters for List. Zero values mean: any source, newest first,
// not yet replayed, 50 rows.
type Filter struct {
	Source          string
	BeforeID        int64 // keyset pagination: only ids below this
	IncludeReplayed bool
	Limit           int
}

// List returns dead letters newest first.
func (d *Store) List(ctx context.Context, f Filter) ([]Letter, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := d.pool.Query(ctx, queries.Get("list"), f.Source, f.BeforeID, f.IncludeReplayed, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanLetter)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Get returns one dead letter or ErrNotFound.
func (d *Store) Get(ctx context.Context, id int64) (Letter, error) {
	rows, err := d.pool.Query(ctx, queries.Get("get"), id)
	if err != nil {
		return Letter{}, fmt.Errorf("get dead letter %d: %w", id, err)
	}
	dl, err := pgx.CollectExactlyOneRow(rows, scanLetter)
	if errors.Is(err, pgx.ErrNoRows) {
		return Letter{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("get dead letter %d: %w", id, err)
	}
	return dl, nil
}

// MarkReplayed records that a dead letter was replayed successfully.
func (d *Store) MarkReplayed(ctx context.Context, id int64) error {
	if _, err := d.pool.Exec(ctx, queries.Get("mark_replayed"), id); err != nil {
		return fmt.Errorf("mark dead letter %d replayed: %w", id, err)
	}
	return nil
}

var scanLetter = pgx.RowToStructByName[Letter]

// Payload returns the raw payload of one dead letter, or ErrNotFound.
func (d *Store) Payload(ctx context.Context, id int64) ([]byte, error) {
	l, err := d.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return l.Payload, nil
}
