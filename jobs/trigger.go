package jobs

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// TriggerEvent is the incoming event as a trigger expression sees it: event.type,
// event.customer_id, event.timestamp and event.properties.<name> (product_id, category,
// price and total in minor units, currency, quantity, order_id, query, url, name, data).
type TriggerEvent struct {
	ID         string         `expr:"id" json:"id"`
	Type       string         `expr:"type" json:"type"`
	CustomerID string         `expr:"customer_id" json:"customer_id"`
	Timestamp  time.Time      `expr:"timestamp" json:"timestamp"`
	Properties map[string]any `expr:"properties" json:"properties,omitempty"`
}

// NewTriggerEvent converts an event for trigger expressions.
func NewTriggerEvent(ev events.Event) TriggerEvent {
	p := ev.Properties
	props := map[string]any{}
	set := func(k string, v any, ok bool) {
		if ok {
			props[k] = v
		}
	}
	set("url", p.URL, p.URL != "")
	set("product_id", p.ProductID, p.ProductID != "")
	set("category", p.Category, p.Category != "")
	set("price", p.PriceMinor, p.PriceMinor != 0)
	set("currency", p.Currency, p.Currency != "")
	set("quantity", p.Quantity, p.Quantity != 0)
	set("query", p.Query, p.Query != "")
	set("order_id", p.OrderID, p.OrderID != "")
	set("total", p.TotalMinor, p.TotalMinor != 0)
	set("name", p.Name, p.Name != "")
	set("data", p.Data, p.Data != nil)
	return TriggerEvent{ID: ev.EventID, Type: ev.Type, CustomerID: ev.ProfileID(), Timestamp: ev.Timestamp, Properties: props}
}

// ParseTrigger compiles a --trigger expression: the profile view (as segments see it, after
// the event was aggregated) plus event, e.g. `event.type == "add_to_cart" && len(cart) > 0`.
func ParseTrigger(src string) (*Segment, error) {
	return parseExpr(src, map[string]any{"event": TriggerEvent{}})
}

// ParseCancelIf compiles a --cancel-if expression, checked when the delay is over: the profile
// view then, the event that triggered and triggered_at (its time), e.g.
// `last_purchase.at > triggered_at` (a purchase since).
func ParseCancelIf(src string) (*Segment, error) {
	return parseExpr(src, map[string]any{"event": TriggerEvent{}, "triggered_at": time.Time{}})
}

// TriggeredArgs renders a triggered campaign for one customer, once per occurrence (the
// --once-per window, or the event when there is none): unique by campaign, customer and
// occurrence, so a redelivered event or a second event in the window enqueues nothing.
type TriggeredArgs struct {
	CampaignID  int64        `json:"campaign_id" river:"unique"`
	CustomerID  string       `json:"customer_id" river:"unique"`
	Occurrence  string       `json:"occurrence" river:"unique"`
	TriggeredAt time.Time    `json:"triggered_at"`
	Event       TriggerEvent `json:"event"`
}

// Kind implements river.JobArgs.
func (TriggeredArgs) Kind() string { return "render.triggered" }

// InsertOpts puts the job on the render queue, unique by its unique fields in every state.
func (TriggeredArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueRender, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// TriggerRefreshDefault is how often the evaluator reloads the active triggered campaigns.
const TriggerRefreshDefault = 5 * time.Second

// TriggerConfig configures a Triggers evaluator. Zero values mean defaults.
type TriggerConfig struct {
	Pool *pgxpool.Pool
	// Insert inserts the render jobs (an insert-only client is enough).
	Insert *river.Client[pgx.Tx]
	// Profiles reads a whole profile when a trigger reads CRM fields (the writer knows only the
	// behavioural part).
	Profiles interface {
		Get(ctx context.Context, id string) (*profile.Profile, error)
	}
	// Refresh is how often the active triggered campaigns are reloaded. Default 5s.
	Refresh time.Duration
	// Now is the campaign clock (delays, windows). Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Triggers evaluates the running triggered campaigns on each profile update: the consumer
// calls AfterWrite once a profile write is durable. It is safe for concurrent use.
type Triggers struct {
	cfg TriggerConfig

	mu     sync.Mutex
	loaded time.Time
	active []*trigger
}

type trigger struct {
	id       int64
	expr     *Segment
	needsCRM bool
	delay    time.Duration
	oncePer  time.Duration
}

// NewTriggers returns an evaluator.
func NewTriggers(cfg TriggerConfig) (*Triggers, error) {
	if cfg.Pool == nil || cfg.Insert == nil || cfg.Profiles == nil {
		return nil, fmt.Errorf("jobs: TriggerConfig.Pool, Insert and Profiles are required")
	}
	cfg.Refresh = cmp.Or(cfg.Refresh, TriggerRefreshDefault)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Triggers{cfg: cfg}, nil
}

// crmSources are the field sources a behaviour-only profile lacks.
var crmSources = map[string]bool{profile.SourceKey: false, profile.SourceCRM: true, profile.SourcePrefs: true}

func (t *Triggers) campaigns(ctx context.Context) ([]*trigger, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.loaded) < t.cfg.Refresh {
		return t.active, nil
	}
	rows, err := t.cfg.Pool.Query(ctx, queries.Get("active-triggers"))
	if err != nil {
		return nil, fmt.Errorf("triggered campaigns: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("triggered campaigns: %w", err)
	}
	sources := map[string]string{}
	for _, s := range profile.FieldSpecs() {
		sources[s.Name] = s.Source
	}
	var active []*trigger
	for _, id := range ids {
		c, err := GetCampaign(ctx, t.cfg.Pool, id)
		if err != nil {
			return nil, err
		}
		expr, err := ParseTrigger(c.Trigger.Expr)
		if err != nil {
			t.cfg.Logger.Error("triggered campaign: bad trigger", "campaign", id, "error", err)
			continue
		}
		tr := &trigger{id: id, expr: expr, delay: c.Trigger.Delay, oncePer: c.Trigger.OncePer}
		for _, f := range expr.Fields() {
			tr.needsCRM = tr.needsCRM || crmSources[sources[f]]
		}
		active = append(active, tr)
	}
	t.active, t.loaded = active, time.Now()
	return active, nil
}

// AfterWrite evaluates every running triggered campaign for the events just aggregated into
// profile id (f is its behaviour after the write) and enqueues a render job per match. It may
// be called again for the same events (a redelivered batch): the jobs' uniqueness and the
// messages' unique key make that harmless. An error leaves the batch unacknowledged.
func (t *Triggers) AfterWrite(ctx context.Context, id string, f *profile.Features, evs []events.Event) error {
	active, err := t.campaigns(ctx)
	if err != nil || len(active) == 0 {
		return err
	}
	now := t.cfg.Now()
	p := &profile.Profile{ID: id, Behaviour: *f}
	var fields map[string]any
	var params []river.InsertManyParams
	for _, tr := range active {
		if tr.needsCRM && p.CRM.Email == "" {
			full, err := t.cfg.Profiles.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("trigger: read profile %s: %w", id, err)
			}
			full.Behaviour = *f
			p, fields = full, nil
		}
		if fields == nil {
			fields = p.Fields(now)
		}
		fired := map[string]bool{}
		for _, ev := range evs {
			te := NewTriggerEvent(ev)
			fields["event"] = te
			ok, err := tr.expr.Match(fields)
			if err != nil || !ok {
				continue //nolint:nilerr // an event the expression cannot evaluate does not trigger
			}
			occ := ev.EventID
			if tr.oncePer > 0 {
				occ = strconv.FormatInt(ev.Timestamp.Truncate(tr.oncePer).Unix(), 10)
			}
			if fired[occ] {
				continue
			}
			fired[occ] = true
			opts := &river.InsertOpts{}
			if due := ev.Timestamp.Add(tr.delay); due.After(now) {
				opts.ScheduledAt = time.Now().Add(due.Sub(now))
			}
			params = append(params, river.InsertManyParams{
				Args:       TriggeredArgs{CampaignID: tr.id, CustomerID: id, Occurrence: occ, TriggeredAt: ev.Timestamp, Event: te},
				InsertOpts: opts,
			})
		}
		delete(fields, "event")
	}
	if len(params) == 0 {
		return nil
	}
	if _, err := t.cfg.Insert.InsertMany(ctx, params); err != nil {
		return fmt.Errorf("trigger: enqueue renders: %w", err)
	}
	return nil
}

type triggeredWorker struct {
	river.WorkerDefaults[TriggeredArgs]
	w *campaignWorkers
}

// Timeout bounds one run (see NewClient).
func (t *triggeredWorker) Timeout(*river.Job[TriggeredArgs]) time.Duration {
	return t.w.cfg.RenderTimeout
}

// Work renders a triggered campaign for one customer once its delay is over: the profile is
// read then, the segment and --cancel-if are checked then, quiet hours hold the job (snooze)
// until they end, and consent and the frequency cap apply as for any campaign.
func (t *triggeredWorker) Work(ctx context.Context, job *river.Job[TriggeredArgs]) error {
	w, a := t.w, job.Args
	st, err := w.status(ctx, a.CampaignID)
	if err != nil {
		return err
	}
	if stop, err := w.held(st); stop {
		return err
	}
	if st != StatusRunning {
		return nil
	}
	d, err := w.definition(ctx, a.CampaignID)
	if err != nil {
		return err
	}
	now := w.cfg.Now()
	if due := a.TriggeredAt.Add(d.c.Trigger.Delay); due.Sub(now) > time.Second {
		return river.JobSnooze(due.Sub(now)) // enqueued early (a clock step): wait for the delay
	}
	if resumed(job.JobRow.Attempt, job.Metadata) {
		left, err := w.unrecorded(ctx, a.CampaignID, []string{a.CustomerID}, a.Occurrence)
		if err != nil || len(left) == 0 {
			return err
		}
	}
	ps, err := w.cfg.Profiles.BatchGet(ctx, []string{a.CustomerID})
	if err != nil {
		return err
	}
	r := recipient{id: a.CustomerID, p: ps[a.CustomerID], sendAt: now, occurrence: a.Occurrence}
	if r.p != nil {
		fields := r.p.Fields(now)
		if ok, err := d.seg.Match(fields); err != nil || !ok {
			r.excluded = ReasonNotInSegment
		} else if d.cancelIf != nil {
			fields["event"], fields["triggered_at"] = a.Event, a.TriggeredAt
			if cancel, err := d.cancelIf.Match(fields); err == nil && cancel {
				r.excluded = ReasonCancelIf
			}
		}
		if r.excluded == "" {
			release := d.c.QuietHours.Release(now, d.c.location(r.p.CRM.Timezone))
			if release.Sub(now) > w.cfg.RenderAhead {
				return river.JobSnooze(release.Sub(now) - w.cfg.RenderAhead) // quiet hours: held, not dropped
			}
			r.sendAt = release
		}
	}
	rest, err := w.renderAndStore(ctx, d, []recipient{r})
	if err != nil {
		return err
	}
	if rest {
		return river.JobSnooze(0)
	}
	return nil
}
