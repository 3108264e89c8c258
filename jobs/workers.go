package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/tracking"
	"github.com/tailor-email/tailor/templates"
)

// Queue names.
const (
	QueueCampaigns = "campaigns" // campaign.start: few, long (a scan of the audience), time-sliced
	QueueRender    = "render"    // render.batch and render.triggered: many, short
)

// Defaults for Config. The River settings are explained on NewClient.
const (
	BatchSizeDefault         = 100 // recipients per render.batch job (= one BatchGetItem)
	ScanSegmentsDefault      = 4
	ScanPageDefault          = 1000 // items per scan page (one cursor step)
	RenderWorkersDefault     = 16
	RenderConcurrencyDefault = 8 // recipients of one batch rendered at once (content calls overlap)
	FetchCooldownDefault     = 20 * time.Millisecond
	CompletedRetainDefault   = 24 * time.Hour
	HandoffDefault           = 8000 // profiles (80 batches); see Config.Handoff
	PauseSnoozeDefault       = 5 * time.Second

	// StartTimeoutDefault bounds one run of campaign.start; it scans for StartSliceDefault,
	// commits its cursors and snoozes (JobSnooze(0)) to continue in a new run.
	StartTimeoutDefault = 10 * time.Second
	StartSliceDefault   = 5 * time.Second
	// RenderTimeoutDefault bounds one run of a render job; it renders for RenderSliceDefault,
	// records what it rendered and snoozes to render the rest of its batch in a new run.
	RenderTimeoutDefault = 10 * time.Second
	RenderSliceDefault   = 6 * time.Second
	// RescueAfterDefault is River's RescueStuckJobsAfter: a job still running this long after it
	// started belongs to a dead process (every job is bounded by a timeout below it) and is
	// retried.
	RescueAfterDefault = 15 * time.Second
)

// CampaignStartArgs starts a campaign: fan out its audience into render batches.
type CampaignStartArgs struct {
	CampaignID int64 `json:"campaign_id"`
}

// Kind implements river.JobArgs.
func (CampaignStartArgs) Kind() string { return "campaign.start" }

// InsertOpts puts the job on the campaigns queue, unique per campaign.
func (CampaignStartArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueCampaigns, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RenderBatchArgs renders one batch of a campaign's recipients, who share a send time.
// Uniqueness is by campaign, recipients and send time: a page enqueued twice makes one job.
type RenderBatchArgs struct {
	CampaignID  int64     `json:"campaign_id" river:"unique"`
	CustomerIDs []string  `json:"customer_ids" river:"unique"`
	SendAt      time.Time `json:"send_at" river:"unique"`
}

// Kind implements river.JobArgs.
func (RenderBatchArgs) Kind() string { return "render.batch" }

// InsertOpts puts the job on the render queue, unique by its recipients.
func (RenderBatchArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueRender, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// ProfileReader is what the jobs need of the profile store: a parallel scan page by page from
// a cursor, and batch reads.
type ProfileReader interface {
	ScanPage(ctx context.Context, segment, total int, after string, limit int) (*ProfilePage, error)
	BatchGet(ctx context.Context, ids []string) (map[string]*profile.Profile, error)
}

// Tracker rewrites one rendered message's HTML for engagement tracking: an open pixel, click
// redirects. *tracking.Rewriter implements it.
type Tracker interface {
	Rewrite(html string, m tracking.Message) string
}

var _ Tracker = (*tracking.Rewriter)(nil)

// Config wires the workers. Zero values mean defaults.
type Config struct {
	Pool     *pgxpool.Pool
	Profiles ProfileReader
	Renderer *templates.Renderer
	// Links builds the unsubscribe (RFC 8058 one-click) and preference page URLs of one
	// recipient's message; topic is the campaign's topic ("" for none), which scopes the one-click
	// unsubscribe. preferences.Links.For implements it; nil leaves both URLs empty.
	Links func(campaignID int64, topic, customerID string) (unsubscribe, preferences string)
	// Tracker adds engagement tracking to the HTML of the messages of campaigns that track
	// opens or clicks (tracking.Rewriter implements it). nil renders every message untracked,
	// and a tracking campaign's render jobs log a warning.
	Tracker Tracker
	// BatchSize is recipients per render.batch job. Default 100.
	BatchSize int
	// ScanSegments is the parallel scan's segment count. Default 4.
	ScanSegments int
	// ScanPage is items per scan page. Default 1000.
	ScanPage int
	// RenderWorkers is the render queue's MaxWorkers. Default 16.
	RenderWorkers int
	// RenderConcurrency is recipients of one batch rendered at once. Default 8.
	RenderConcurrency int
	// Handoff is how many scanned profiles the fan-out holds in memory for the render jobs
	// of this process, which then skip their BatchGetItem (see handoff). Default
	// HandoffDefault; negative: none, every render job reads its profiles.
	Handoff int
	// RenderAhead is how long before a recipient's send time the render job runs. Default
	// RenderAheadDefault (10 minutes).
	RenderAhead time.Duration
	// FetchCooldown is River's FetchCooldown. Default 20ms.
	FetchCooldown time.Duration
	// PauseSnooze is how long a job of a paused campaign snoozes. Default 5s.
	PauseSnooze time.Duration
	// StartSlice and RenderSlice bound the work of one job run (defaults 5s and 6s); the
	// timeouts and the rescue delay are StartTimeoutDefault, RenderTimeoutDefault and
	// RescueAfterDefault unless set.
	StartSlice, RenderSlice                  time.Duration
	StartTimeout, RenderTimeout, RescueAfter time.Duration
	Logger                                   *slog.Logger
	// BodyRetention is how long a rendered body (HTML and text) is kept after its message's
	// final ack; the periodic delivery.retention job deletes it then (metadata and
	// body_sha256 stay). Default BodyRetentionDefault (7 days); negative: keep bodies.
	BodyRetention time.Duration
	// RetentionInterval is how often that job runs. Default RetentionIntervalDefault (10 min).
	RetentionInterval time.Duration
	// Now is the campaign clock: send times, local time, quiet hours and the templates' `now`.
	// Default time.Now. River schedules by the real clock: a job due at clock time t is
	// scheduled at time.Now() + (t - Now()).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.ScanSegments = cmp.Or(c.ScanSegments, ScanSegmentsDefault)
	c.ScanPage = cmp.Or(c.ScanPage, ScanPageDefault)
	c.RenderWorkers = cmp.Or(c.RenderWorkers, RenderWorkersDefault)
	c.RenderConcurrency = cmp.Or(c.RenderConcurrency, RenderConcurrencyDefault)
	c.Handoff = cmp.Or(c.Handoff, HandoffDefault)
	c.RenderAhead = cmp.Or(c.RenderAhead, RenderAheadDefault)
	c.FetchCooldown = cmp.Or(c.FetchCooldown, FetchCooldownDefault)
	c.PauseSnooze = cmp.Or(c.PauseSnooze, PauseSnoozeDefault)
	c.StartSlice = cmp.Or(c.StartSlice, StartSliceDefault)
	c.RenderSlice = cmp.Or(c.RenderSlice, RenderSliceDefault)
	c.StartTimeout = cmp.Or(c.StartTimeout, StartTimeoutDefault)
	c.RenderTimeout = cmp.Or(c.RenderTimeout, RenderTimeoutDefault)
	c.RescueAfter = cmp.Or(c.RescueAfter, RescueAfterDefault)
	c.BodyRetention = cmp.Or(c.BodyRetention, BodyRetentionDefault)
	c.RetentionInterval = cmp.Or(c.RetentionInterval, RetentionIntervalDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Renderer == nil {
		c.Renderer = templates.NewRenderer(templates.RendererConfig{})
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Pool == nil || c.Profiles == nil:
		return errors.New("jobs: Config.Pool and Config.Profiles are required")
	case c.BatchSize < 1 || c.BatchSize > 100:
		return fmt.Errorf("jobs: Config.BatchSize %d: want 1 to 100", c.BatchSize)
	case c.StartSlice >= c.StartTimeout || c.RenderSlice >= c.RenderTimeout:
		return errors.New("jobs: Config.StartSlice and RenderSlice must be below their timeouts")
	case c.RetentionInterval < time.Second:
		return errors.New("jobs: Config.RetentionInterval must be at least 1s")
	case c.RescueAfter <= max(c.StartTimeout, c.RenderTimeout):
		return errors.New("jobs: Config.RescueAfter must exceed every job timeout, or running jobs would be rescued")
	}
	return nil
}

// NewInsertClient returns a River client that only inserts jobs (the CLI's).
func NewInsertClient(pool *pgxpool.Pool) (*river.Client[pgx.Tx], error) {
	return river.NewClient(riverpgxv5.New(pool), &river.Config{})
}

// NewClient returns a River client that works Tailor's queues. Start it with Start(ctx) and stop
// it with Stop(ctx) (soft: running jobs finish).
//
// River settings, and why:
//   - every job kind is bounded in time: campaign.start by StartTimeout (10s; it works for
//     StartSlice, 5s, then commits its scan cursors and snoozes to go on), render jobs by
//     RenderTimeout (10s; they render for RenderSlice, 6s, record what they rendered and snooze
//     for the rest). So a job still running after RescueAfter (15s) is a dead process's, and
//     River's rescuer retries it. After a kill -9 a new `tailor work` becomes leader once the
//     dead leader's lease lapses (River: elect interval 5s + 10s TTL padding) and its rescuer
//     runs at once, then every 30s: the dead process's jobs run again within about 20-50s.
//     River's default (1 hour) left a crashed campaign stuck for an hour.
//   - FetchCooldown 20ms (River's 100ms caps a client near MaxWorkers/0.1s jobs per second).
//   - completed jobs are kept 24h (unique batches stay deduplicated that long; the messages'
//     unique key dedupes after that).
//   - MaxAttempts 10 for transient errors; a template fault cancels (river.JobCancel) at once.
func NewClient(cfg Config) (*river.Client[pgx.Tx], error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	w := &campaignWorkers{cfg: cfg, defs: map[int64]*definition{},
		handoff: newHandoff(cfg.Handoff, handoffLag(cfg), handoffWait)}
	river.AddWorker(workers, &startWorker{w: w})
	river.AddWorker(workers, &renderWorker{w: w})
	river.AddWorker(workers, &triggeredWorker{w: w})
	river.AddWorker(workers, &retentionWorker{w: w})
	return river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		Queues: map[string]river.QueueConfig{
			QueueCampaigns:   {MaxWorkers: 2},
			QueueRender:      {MaxWorkers: cfg.RenderWorkers},
			QueueMaintenance: {MaxWorkers: 1},
		},
		PeriodicJobs: []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.RetentionInterval),
			func() (river.JobArgs, *river.InsertOpts) { return RetentionArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true})},
		Workers:                     workers,
		FetchCooldown:               cfg.FetchCooldown,
		JobTimeout:                  max(cfg.StartTimeout, cfg.RenderTimeout),
		RescueStuckJobsAfter:        cfg.RescueAfter,
		CompletedJobRetentionPeriod: CompletedRetainDefault,
		Logger:                      cfg.Logger,
		MaxAttempts:                 10,
	})
}

// handoffWait is how long the fan-out waits for render jobs to take handed-off profiles
// before it drops the oldest to make room.
const handoffWait = time.Second

// handoffLag is how many batches after an entry's a job may take before the entry counts as
// another process's: a fetch's worth for every worker, and the batches of one page per scan
// segment twice over, since the segments' pages commit (and become jobs) in any order.
func handoffLag(cfg Config) int {
	return 2*cfg.RenderWorkers + 2*cfg.ScanSegments*((cfg.ScanPage+cfg.BatchSize-1)/cfg.BatchSize)
}

type campaignWorkers struct {
	cfg     Config
	mu      sync.Mutex
	defs    map[int64]*definition // a campaign's definition never changes once it is scheduled
	handoff *handoff              // nil without one
}

// definition is a campaign as the render jobs need it, parsed once per process.
type definition struct {
	c        *Campaign
	tpl      *templates.Template
	seg      *Segment
	cancelIf *Segment
}

// definition loads a job's campaign; a campaign that no longer exists cancels the job for
// good, a template that does not parse fails the campaign.
func (w *campaignWorkers) definition(ctx context.Context, id int64) (*definition, error) {
	w.mu.Lock()
	d, ok := w.defs[id]
	w.mu.Unlock()
	if ok {
		return d, nil
	}
	c, err := GetCampaign(ctx, w.cfg.Pool, id)
	if errors.Is(err, ErrCampaignNotFound) {
		return nil, river.JobCancel(err)
	}
	if err != nil {
		return nil, err
	}
	d = &definition{c: c}
	if d.tpl, err = templates.FromFiles(c.TemplateFiles); err != nil {
		return nil, w.fail(ctx, id, fmt.Errorf("template: %w", err))
	}
	if d.seg, err = ParseSegment(c.Segment); err != nil {
		return nil, w.fail(ctx, id, err)
	}
	if c.Trigger != nil && c.Trigger.CancelIf != "" {
		if d.cancelIf, err = ParseCancelIf(c.Trigger.CancelIf); err != nil {
			return nil, w.fail(ctx, id, err)
		}
	}
	if !c.Track.IsZero() && w.cfg.Tracker == nil {
		w.cfg.Logger.Warn("campaign tracks engagement but this worker has no --public-url and --token-key: its messages render untracked",
			"campaign", id, "track", c.Track.String())
	}
	if c.Status == StatusDraft {
		return d, nil // not cached: scheduling sets its send time
	}
	w.mu.Lock()
	if len(w.defs) > 1000 { // bound the cache; campaigns are few
		clear(w.defs)
	}
	w.defs[id] = d
	w.mu.Unlock()
	return d, nil
}

// fail marks the campaign failed with err and cancels the job for good.
func (w *campaignWorkers) fail(ctx context.Context, id int64, err error) error {
	if _, xerr := w.cfg.Pool.Exec(ctx, queries.Get("fail-campaign"), id, err.Error()); xerr != nil {
		return fmt.Errorf("fail campaign %d: %w (after %w)", id, xerr, err)
	}
	w.cfg.Logger.Error("campaign failed", "campaign", id, "error", err)
	return river.JobCancel(fmt.Errorf("campaign %d: %w", id, err))
}

// status reads a campaign's status (every job does, so pause and cancel take effect quickly).
func (w *campaignWorkers) status(ctx context.Context, id int64) (string, error) {
	var s string
	err := w.cfg.Pool.QueryRow(ctx, queries.Get("campaign-state"), id).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", river.JobCancel(&NotFoundError{ID: id})
	}
	if err != nil {
		return "", fmt.Errorf("campaign %d status: %w", id, err)
	}
	return s, nil
}

// held says whether a job of a campaign in status s stops here, and with what: paused work
// snoozes, finished campaigns' jobs end (true, nil), live ones go on (false).
func (w *campaignWorkers) held(s string) (bool, error) {
	switch s {
	case StatusPaused, StatusDraft, StatusScheduled:
		return true, river.JobSnooze(w.cfg.PauseSnooze)
	case StatusCancelled, StatusFailed:
		return true, nil
	}
	return false, nil
}

// realAt converts a time of the campaign clock (Config.Now) to the real clock River schedules by.
func (w *campaignWorkers) realAt(t time.Time) time.Time {
	return time.Now().Add(t.Sub(w.cfg.Now()))
}
