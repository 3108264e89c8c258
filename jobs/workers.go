package jobs

import (
	"cmp"
	"context"
	"encoding/json"
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
	"github.com/tailor-email/tailor/templates"
)

// Queue names.
const (
	QueueCampaigns = "campaigns" // campaign.start: few, long (a scan of the audience)
	QueueRender    = "render"    // render.batch: many, short
)

// Defaults for Config.
const (
	BatchSizeDefault       = 100 // recipients per render.batch job (= one BatchGetItem)
	ScanSegmentsDefault    = 4
	RenderWorkersDefault   = 16
	FetchCooldownDefault   = 20 * time.Millisecond // River's default (100ms) caps a client near MaxWorkers/0.1s
	CompletedRetainDefault = 24 * time.Hour
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

// RenderBatchArgs renders one batch of a campaign's recipients.
type RenderBatchArgs struct {
	CampaignID  int64    `json:"campaign_id"`
	CustomerIDs []string `json:"customer_ids"`
}

// Kind implements river.JobArgs.
func (RenderBatchArgs) Kind() string { return "render.batch" }

// InsertOpts puts the job on the render queue.
func (RenderBatchArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueRender} }

// ProfileReader is what the jobs need of the profile store.
type ProfileReader interface {
	Scan(ctx context.Context, segments int, fn func(*profile.Profile) error) error
	BatchGet(ctx context.Context, ids []string) (map[string]*profile.Profile, error)
}

// Config wires the workers. Zero values mean defaults.
type Config struct {
	Pool     *pgxpool.Pool
	Profiles ProfileReader
	Renderer *templates.Renderer
	// Links builds the unsubscribe (RFC 8058 one-click) and preference page URLs of one
	// recipient's message; topic is the campaign's topic ("" for none), which scopes the one-click
	// unsubscribe. preferences.Links.For implements it; nil leaves both URLs empty.
	Links func(campaignID int64, topic, customerID string) (unsubscribe, preferences string)
	// BatchSize is recipients per render.batch job. Default 100.
	BatchSize int
	// ScanSegments is the parallel scan's segment count. Default 4.
	ScanSegments int
	// RenderWorkers is the render queue's MaxWorkers. Default 16.
	RenderWorkers int
	// FetchCooldown is River's FetchCooldown. Default 20ms.
	FetchCooldown time.Duration
	Logger        *slog.Logger
	// Now is the clock for templates' `now`; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.ScanSegments = cmp.Or(c.ScanSegments, ScanSegmentsDefault)
	c.RenderWorkers = cmp.Or(c.RenderWorkers, RenderWorkersDefault)
	c.FetchCooldown = cmp.Or(c.FetchCooldown, FetchCooldownDefault)
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

// NewInsertClient returns a River client that only inserts jobs (the CLI's).
func NewInsertClient(pool *pgxpool.Pool) (*river.Client[pgx.Tx], error) {
	return river.NewClient(riverpgxv5.New(pool), &river.Config{})
}

// NewClient returns a River client that works Tailor's queues. Start it with Start(ctx) and stop
// it with Stop(ctx) (soft: running jobs finish).
func NewClient(cfg Config) (*river.Client[pgx.Tx], error) {
	cfg = cfg.withDefaults()
	if cfg.Pool == nil || cfg.Profiles == nil {
		return nil, errors.New("jobs: Config.Pool and Config.Profiles are required")
	}
	workers := river.NewWorkers()
	w := &campaignWorkers{cfg: cfg, tmpl: map[int64]*templates.Template{}}
	river.AddWorker(workers, &startWorker{w: w})
	river.AddWorker(workers, &renderWorker{w: w})
	return river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		Queues: map[string]river.QueueConfig{
			QueueCampaigns: {MaxWorkers: 2},
			QueueRender:    {MaxWorkers: cfg.RenderWorkers},
		},
		Workers:                     workers,
		FetchCooldown:               cfg.FetchCooldown,
		CompletedJobRetentionPeriod: CompletedRetainDefault,
		Logger:                      cfg.Logger,
		MaxAttempts:                 10,
	})
}

type campaignWorkers struct {
	cfg  Config
	mu   sync.Mutex
	tmpl map[int64]*templates.Template // parsed once per campaign; a campaign's template never changes
}

func (w *campaignWorkers) template(c *Campaign) (*templates.Template, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.tmpl[c.ID]; ok {
		return t, nil
	}
	t, err := templates.FromFiles(c.TemplateFiles)
	if err != nil {
		return nil, err
	}
	if len(w.tmpl) > 1000 { // bound the cache; campaigns are few
		clear(w.tmpl)
	}
	w.tmpl[c.ID] = t
	return t, nil
}

// campaign loads a job's campaign; a campaign that no longer exists cancels the job for good.
func (w *campaignWorkers) campaign(ctx context.Context, id int64) (*Campaign, error) {
	c, err := GetCampaign(ctx, w.cfg.Pool, id)
	if errors.Is(err, ErrCampaignNotFound) {
		return nil, river.JobCancel(err)
	}
	return c, err
}

type startWorker struct {
	river.WorkerDefaults[CampaignStartArgs]
	w *campaignWorkers
}

// Work streams the audience and enqueues render batches as they fill, so memory stays bounded by
// one batch per scan segment whatever the audience size.
func (s *startWorker) Work(ctx context.Context, job *river.Job[CampaignStartArgs]) error {
	cfg := s.w.cfg
	id := job.Args.CampaignID
	c, err := s.w.campaign(ctx, id)
	if err != nil {
		return err
	}
	if c.FanoutDone || (c.Status != StatusScheduled && c.Status != StatusRunning) {
		return nil // already fanned out (a retried or duplicate job)
	}
	seg, err := ParseSegment(c.Segment)
	if err != nil {
		_, _ = cfg.Pool.Exec(ctx, queries.Get("fail-campaign"), id, err.Error())
		return river.JobCancel(err)
	}
	if _, err := cfg.Pool.Exec(ctx, queries.Get("start-campaign"), id); err != nil {
		return fmt.Errorf("start campaign %d: %w", id, err)
	}
	client := river.ClientFromContext[pgx.Tx](ctx)

	var (
		mu       sync.Mutex
		batch    []string
		audience int
	)
	flush := func(ids []string) error {
		if len(ids) == 0 {
			return nil
		}
		_, err := client.InsertMany(ctx, []river.InsertManyParams{{Args: RenderBatchArgs{CampaignID: id, CustomerIDs: ids}}})
		return err
	}
	now := cfg.Now()
	err = cfg.Profiles.Scan(ctx, cfg.ScanSegments, func(p *profile.Profile) error {
		if !p.Reachable() {
			return nil // no address (events only, or erased): not part of any audience
		}
		ok, err := seg.Match(p.Fields(now))
		if err != nil || !ok {
			return nil //nolint:nilerr // a profile the expression cannot evaluate is not in the segment
		}
		mu.Lock()
		audience++
		batch = append(batch, p.ID)
		var full []string
		if len(batch) >= cfg.BatchSize {
			full, batch = batch, nil
		}
		mu.Unlock()
		return flush(full)
	})
	if err != nil {
		return fmt.Errorf("campaign %d fan-out: %w", id, err)
	}
	if err := flush(batch); err != nil {
		return fmt.Errorf("campaign %d fan-out: %w", id, err)
	}
	if _, err := cfg.Pool.Exec(ctx, queries.Get("finish-fanout"), id, audience); err != nil {
		return err
	}
	// An empty audience (or batches that all finished before this point) completes here.
	_, err = cfg.Pool.Exec(ctx, queries.Get("maybe-finish-campaign"), id)
	cfg.Logger.Info("campaign fanned out", "campaign", id, "audience", audience)
	return err
}

type renderWorker struct {
	river.WorkerDefaults[RenderBatchArgs]
	w *campaignWorkers
}

// Work renders one batch and stores every recipient's outcome in one statement.
func (r *renderWorker) Work(ctx context.Context, job *river.Job[RenderBatchArgs]) error {
	cfg := r.w.cfg
	id := job.Args.CampaignID
	c, err := r.w.campaign(ctx, id)
	if err != nil {
		return err
	}
	tpl, err := r.w.template(c)
	if err != nil {
		_, _ = cfg.Pool.Exec(ctx, queries.Get("fail-campaign"), id, "template: "+err.Error())
		return river.JobCancel(fmt.Errorf("campaign %d template: %w", id, err))
	}
	profiles, err := cfg.Profiles.BatchGet(ctx, job.Args.CustomerIDs)
	if err != nil {
		return err
	}
	campaign := map[string]any{"id": c.ID, "name": c.Name}
	now := cfg.Now()
	var rows messageRows
	for _, cid := range job.Args.CustomerIDs {
		p, ok := profiles[cid]
		if !ok || !p.Reachable() {
			// Erased or emptied since fan-out: recorded, so the campaign's count adds up.
			rows.add(cid, "", "skipped", &templates.Message{}, "profile has no email address any more")
			continue
		}
		email := p.CRM.Email
		data := RenderData(p, campaign, now)
		if cfg.Links != nil {
			data.UnsubscribeURL, data.PreferencesURL = cfg.Links(id, "", cid)
		}
		msg, err := cfg.Renderer.Render(ctx, tpl, data)
		switch {
		case errors.Is(err, templates.ErrSkipRecipient):
			rows.add(cid, email, "skipped", &templates.Message{}, err.Error())
		case err != nil && ctx.Err() != nil:
			return err
		case templates.IsTemplateFault(err):
			// The template breaches a budget whatever the recipient: every recipient would fail
			// the same way, so the campaign fails now, with the budget and where.
			_, _ = cfg.Pool.Exec(ctx, queries.Get("fail-campaign"), id, "template: "+err.Error())
			return river.JobCancel(fmt.Errorf("campaign %d: %w", id, err))
		case errors.Is(err, templates.ErrBudgetExceeded):
			// This recipient's data (say, a huge content array) breaches a budget: only they go.
			rows.add(cid, email, "skipped", &templates.Message{}, err.Error())
		case err != nil:
			rows.add(cid, email, "failed", &templates.Message{}, err.Error())
		default:
			rows.add(cid, email, "rendered", msg, "")
		}
	}
	if _, err := cfg.Pool.Exec(ctx, queries.Get("insert-messages"), id, rows.customer, rows.email, rows.status, rows.subject,
		rows.preheader, rows.html, rows.text, rows.headers, rows.provenance, rows.reason); err != nil {
		return fmt.Errorf("store rendered messages: %w", err)
	}
	_, err = cfg.Pool.Exec(ctx, queries.Get("maybe-finish-campaign"), id)
	return err
}

// messageRows holds a batch column-wise for the unnest insert.
type messageRows struct {
	customer, email, status, subject, preheader, html, text []string
	headers, provenance                                     [][]byte
	reason                                                  []*string
}

func (m *messageRows) add(customer, email, status string, msg *templates.Message, reason string) {
	m.customer = append(m.customer, customer)
	m.email = append(m.email, email)
	m.status = append(m.status, status)
	m.subject = append(m.subject, msg.Subject)
	m.preheader = append(m.preheader, msg.Preheader)
	m.html = append(m.html, msg.HTML)
	m.text = append(m.text, msg.Text)
	headers := msg.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	h, _ := json.Marshal(headers)
	prov, _ := json.Marshal(msg.Provenance)
	m.headers = append(m.headers, h)
	m.provenance = append(m.provenance, prov)
	if reason == "" {
		m.reason = append(m.reason, nil)
	} else {
		m.reason = append(m.reason, &reason)
	}
}

// RenderData is what a recipient's message is rendered from: the profile's read view as
// customer.*, with the recipient's id (variant assignment) and locale (money and dates).
func RenderData(p *profile.Profile, campaign map[string]any, now time.Time) templates.RenderData {
	return templates.RenderData{CustomerID: p.ID, Customer: p.Fields(now), Locale: p.CRM.Locale, Campaign: campaign, Now: now}
}
