package jobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"golang.org/x/sync/errgroup"

	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/preferences"
)

// Scan counter keys: who the scan leaves out of the audience, and who gets it the next day.
const (
	CounterNotInSegment = "scan:not_in_segment"
	CounterNoAddress    = "scan:" + preferences.ReasonNoAddress
	CounterSegmentError = "scan:segment_error"
	CounterDecodeError  = "scan:decode_error"
	CounterNextDay      = "next_day"
)

type startWorker struct {
	river.WorkerDefaults[CampaignStartArgs]
	w *campaignWorkers
}

// Timeout bounds one run (see NewClient).
func (s *startWorker) Timeout(*river.Job[CampaignStartArgs]) time.Duration {
	return s.w.cfg.StartTimeout
}

// errSliceOver stops a segment's scan when the run's time slice is over.
var errSliceOver = errors.New("time slice over")

// Work streams the audience, one parallel-scan page at a time per segment, and enqueues each
// page's render batches with InsertManyTx in the transaction that moves the segment's cursor:
// a run that dies resumes after its last committed page, and memory stays bounded by one page
// per segment whatever the audience size. A run works for StartSlice, then snoozes to go on.
func (s *startWorker) Work(ctx context.Context, job *river.Job[CampaignStartArgs]) error {
	cfg := s.w.cfg
	id := job.Args.CampaignID
	c, err := GetCampaign(ctx, cfg.Pool, id)
	if errors.Is(err, ErrCampaignNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	switch {
	case c.Kind != KindBatch || c.FanoutDone:
		return nil // nothing to fan out (a triggered campaign, a duplicate or late job)
	case c.Status == StatusPaused:
		return river.JobSnooze(cfg.PauseSnooze)
	case c.Status != StatusScheduled && c.Status != StatusRunning:
		return nil // cancelled, failed or a draft again
	}
	seg, err := ParseSegment(c.Segment)
	if err != nil {
		return s.w.fail(ctx, id, err)
	}
	var segments int
	var status string
	if err := cfg.Pool.QueryRow(ctx, queries.Get("start-campaign"), id, cfg.ScanSegments, cfg.Now()).Scan(&status, &segments); err != nil {
		return fmt.Errorf("start campaign %d: %w", id, err)
	}
	if _, err := cfg.Pool.Exec(ctx, queries.Get("init-scan-segments"), id, segments); err != nil {
		return fmt.Errorf("campaign %d: scan cursors: %w", id, err)
	}
	c, err = GetCampaign(ctx, cfg.Pool, id) // started_at is the start every send time is computed from
	if err != nil {
		return err
	}
	rows, err := cfg.Pool.Query(ctx, queries.Get("scan-segments"), id)
	if err != nil {
		return fmt.Errorf("campaign %d: scan cursors: %w", id, err)
	}
	type cursor struct {
		segment int
		last    *string
		done    bool
	}
	cursors, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cursor, error) {
		var k cursor
		err := r.Scan(&k.segment, &k.last, &k.done)
		return k, err
	})
	if err != nil {
		return fmt.Errorf("campaign %d: scan cursors: %w", id, err)
	}
	f := &fanout{w: s.w, c: c, seg: seg, total: segments, start: c.startedAt(cfg.Now()), client: river.ClientFromContext[pgx.Tx](ctx),
		deadline: time.Now().Add(cfg.StartSlice)}
	g, gctx := errgroup.WithContext(ctx)
	for _, k := range cursors {
		if k.done {
			continue
		}
		g.Go(func() error { return f.segment(gctx, k.segment, k.last) })
	}
	err = g.Wait()
	var held heldError
	switch {
	case errors.Is(err, errSliceOver):
		return river.JobSnooze(0) // go on in a new run, from the committed cursors
	case errors.As(err, &held):
		if held.status == StatusPaused {
			return river.JobSnooze(cfg.PauseSnooze)
		}
		return nil // cancelled or failed: fan-out stops
	case err != nil:
		return fmt.Errorf("campaign %d fan-out: %w", id, err)
	}
	return s.finish(ctx, id)
}

// finish marks fan-out done; the campaign completes here if every batch already finished.
// The row lock comes first, in its own statement, so the update's snapshot includes every
// render job that committed before it (they update the same row).
func (s *startWorker) finish(ctx context.Context, id int64) error {
	return pgx.BeginFunc(ctx, s.w.cfg.Pool, func(tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx, queries.Get("lock-fanout"), id).Scan(&status); err != nil {
			return fmt.Errorf("campaign %d: finish fan-out: %w", id, err)
		}
		if err := tx.QueryRow(ctx, queries.Get("finish-fanout"), id).Scan(&status); err != nil {
			return fmt.Errorf("campaign %d: finish fan-out: %w", id, err)
		}
		s.w.cfg.Logger.Info("campaign fanned out", "campaign", id, "status", status)
		return nil
	})
}

// startedAt is the instant the fan-out computes send times from (stored at the first start, so
// a resumed fan-out decides "today or tomorrow" the same way).
func (c *Campaign) startedAt(now time.Time) time.Time {
	if c.StartedAt != nil {
		return *c.StartedAt
	}
	return now
}

// heldError stops the fan-out because the campaign left running.
type heldError struct{ status string }

func (e heldError) Error() string { return "campaign " + e.status }

type fanout struct {
	w        *campaignWorkers
	c        *Campaign
	seg      *Segment
	total    int
	start    time.Time
	client   *river.Client[pgx.Tx]
	deadline time.Time
}

// segment scans one parallel-scan segment from its cursor until it is done or the slice ends.
func (f *fanout) segment(ctx context.Context, segment int, last *string) error {
	cfg := f.w.cfg
	for {
		if time.Now().After(f.deadline) {
			return errSliceOver
		}
		after := ""
		if last != nil {
			after = *last
		}
		page, err := cfg.Profiles.ScanPage(ctx, segment, f.total, after, cfg.ScanPage)
		if err != nil {
			return err
		}
		if err := f.page(ctx, segment, last, page); err != nil {
			return err
		}
		if page.Last == "" {
			return nil
		}
		last = &page.Last
	}
}

// page filters one page, groups the audience into batches by send time and commits them with
// the segment's new cursor and the page's counters.
func (f *fanout) page(ctx context.Context, segment int, last *string, page *ProfilePage) error {
	cfg := f.w.cfg
	counts := map[string]int64{}
	groups := map[time.Time][]int{} // by send time
	now := cfg.Now()
	for i, p := range page.Profiles {
		if !p.Reachable() {
			counts[CounterNoAddress]++ // no address (events only, or erased)
			continue
		}
		ok, err := f.seg.MatchProfile(p, now)
		if err != nil {
			counts[CounterSegmentError]++
			counts[CounterSegmentError+": "+segmentErrorReason(err)]++
			continue
		}
		if !ok {
			counts[CounterNotInSegment]++
			continue
		}
		at, nextDay := f.c.sendTime(p.CRM.Timezone, f.start)
		if nextDay {
			counts[CounterNextDay]++
		}
		groups[at] = append(groups[at], i)
	}
	counts[CounterDecodeError] += int64(len(page.Bad))
	var params []river.InsertManyParams
	audience := 0
	for _, at := range slices.SortedFunc(maps.Keys(groups), func(a, b time.Time) int { return a.Compare(b) }) {
		idx := groups[at]
		audience += len(idx)
		opts := &river.InsertOpts{}
		if due := at.Add(-cfg.RenderAhead); due.After(now) {
			opts.ScheduledAt = f.w.realAt(due)
		}
		for chunk := range slices.Chunk(idx, cfg.BatchSize) {
			args := RenderBatchArgs{CampaignID: f.c.ID, SendAt: at}
			for _, i := range chunk {
				args.CustomerIDs = append(args.CustomerIDs, page.Profiles[i].ID)
			}
			params = append(params, river.InsertManyParams{Args: args, InsertOpts: opts})
			if opts.ScheduledAt.IsZero() {
				// Due now: this process's render jobs take the scanned profiles. (A batch due
				// later reads them when it renders, fresh.)
				ps := make(map[string]*profile.Profile, len(chunk))
				for _, i := range chunk {
					ps[page.Profiles[i].ID] = page.Profiles[i]
				}
				if err := f.w.handoff.put(ctx, batchKey(f.c.ID, at, args.CustomerIDs), ps); err != nil {
					return err
				}
			}
		}
	}
	done := page.Last == ""
	var next *string
	if !done {
		next = &page.Last
	}
	var status string
	err := pgx.BeginFunc(ctx, cfg.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, queries.Get("advance-scan"), f.c.ID, segment, last, next, done)
		if err != nil {
			return fmt.Errorf("advance scan cursor: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errSliceOver // another run moved this cursor: let the job's next run go on
		}
		if len(params) > 0 {
			if _, err := f.client.InsertManyTx(ctx, tx, params); err != nil {
				return fmt.Errorf("enqueue render batches: %w", err)
			}
		}
		if err := tx.QueryRow(ctx, queries.Get("add-audience"), f.c.ID, audience).Scan(&status); err != nil {
			return fmt.Errorf("count audience: %w", err)
		}
		return addCounters(ctx, tx, f.c.ID, counts)
	})
	if err == nil && status != StatusRunning {
		// The page is committed: its batches snooze or end by the campaign's status themselves.
		return heldError{status: status}
	}
	return err
}

// segmentErrorReason is the stable part of a per-profile segment error (expr-lang's message
// without the expression), so counters group profiles that fail the same way.
func segmentErrorReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

// addCounters adds counts to the campaign's counters (keys sorted: a fixed lock order).
func addCounters(ctx context.Context, tx pgx.Tx, id int64, counts map[string]int64) error {
	keys := make([]string, 0, len(counts))
	for k, n := range counts {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	ns := make([]int64, len(keys))
	for i, k := range keys {
		ns[i] = counts[k]
	}
	if _, err := tx.Exec(ctx, queries.Get("add-counters"), id, keys, ns); err != nil {
		return fmt.Errorf("campaign %d counters: %w", id, err)
	}
	return nil
}
