package jobs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Progress is a campaign with its counters: what `tailor campaign status` and `report` show.
// Counters are kept by the statements that record recipients, never counted from messages.
type Progress struct {
	*Campaign
	// Counters by key: rendered, excluded, skipped, failed, cancelled; reason:<reason>;
	// scan:<reason> (left out by the scan, not in the audience); next_day; variant:<name>;
	// source:<name>:<outcome>.
	Counters map[string]int64
}

// GetProgress loads a campaign and its counters; an unknown id is a *NotFoundError.
func GetProgress(ctx context.Context, pool *pgxpool.Pool, id int64) (*Progress, error) {
	c, err := GetCampaign(ctx, pool, id)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, queries.Get("counters"), id)
	if err != nil {
		return nil, fmt.Errorf("campaign %d counters: %w", id, err)
	}
	p := &Progress{Campaign: c, Counters: map[string]int64{}}
	var k string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { p.Counters[k] = n; return nil }); err != nil {
		return nil, fmt.Errorf("campaign %d counters: %w", id, err)
	}
	return p, nil
}

// Count is one counter.
type Count struct {
	Key string
	N   int64
}

// Reasons returns the counters under prefix ("reason:", "scan:") without it, sorted by key.
func (p *Progress) Reasons(prefix string) []Count {
	var out []Count
	for _, k := range slices.Sorted(maps.Keys(p.Counters)) {
		if r, ok := strings.CutPrefix(k, prefix); ok {
			out = append(out, Count{Key: r, N: p.Counters[k]})
		}
	}
	return out
}

// Sources returns, per content source, its outcomes and their counts (source:<name>:<outcome>).
func (p *Progress) Sources() map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for _, c := range p.Reasons("source:") {
		name, outcome, _ := strings.Cut(c.Key, ":")
		if out[name] == nil {
			out[name] = map[string]int64{}
		}
		out[name][outcome] = c.N
	}
	return out
}
