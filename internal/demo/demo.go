package demo

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates"
	"github.com/tailor-email/tailor/templates/contentdemo"
)

// Defaults for Config.
const (
	CustomersDefault = 24
	ViewsDefault     = 3 // product views per customer
	TimeoutDefault   = 3 * time.Minute
	SegmentDefault   = "count_product_view > 0"
)

// Config says what the demo does. Zero values mean defaults.
type Config struct {
	TemplateDir string        // default templates/examples/welcome
	Customers   int           // customers seeded; default 24
	Views       int           // product_view events per customer; default 3
	Segment     string        // default "count_product_view > 0"
	Show        int           // rendered emails printed; default 3
	Timeout     time.Duration // for the whole run; default 3m
	// ContentErrorRate makes the demo content service fail this fraction of requests, to show
	// fallbacks. Default 0.
	ContentErrorRate float64
	Out              io.Writer
	Logger           *slog.Logger
}

func (c Config) withDefaults() Config {
	c.TemplateDir = cmp.Or(c.TemplateDir, "templates/examples/welcome")
	c.Customers = cmp.Or(c.Customers, CustomersDefault)
	c.Views = cmp.Or(c.Views, ViewsDefault)
	c.Segment = cmp.Or(c.Segment, SegmentDefault)
	c.Show = cmp.Or(c.Show, 3)
	c.Timeout = cmp.Or(c.Timeout, TimeoutDefault)
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Result is what a run produced.
type Result struct {
	CampaignID int64
	Customers  int
	Events     int
	Messages   []jobs.Message
	Outcomes   map[string]int  // content source outcome -> count, over all messages and sources
	Delivery   delivery.Counts // the sender stage's outcome
	Elapsed    time.Duration
}

var firstNames = []string{"Ada", "Bruno", "Chloé", "Dmitri", "Elif", "Farah", "Gustav", "Hana", "Iker", "Jun",
	"Kemal", "Léa", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomás", "Uma", "Viktor", "Wen", "Yara"}

var categories = []string{"shoes", "home", "books", "kitchen"}

// Run seeds, runs every stage and waits for the campaign. It stops everything it started before
// it returns.
func Run(ctx context.Context, b *backends.Backends, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Customers < 1 || cfg.Customers > 10000 {
		return nil, fmt.Errorf("demo: customers %d: want 1 to 10000", cfg.Customers)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, "demo: "+format+"\n", args...) }

	tpl, err := templates.Load(cfg.TemplateDir)
	if err != nil {
		return nil, fmt.Errorf("demo: template: %w", err)
	}
	profiles, err := app.Profiles(ctx, b)
	if err != nil {
		return nil, err
	}

	// The demo content service, on a free loopback port.
	content, err := contentdemo.NewHandler(contentdemo.Config{ErrorRate: cfg.ContentErrorRate})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	contentURL := "http://" + ln.Addr().String()
	srv := &http.Server{Handler: content, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	say("content service at %s", contentURL)

	// The stages, each in its own goroutine, all stopped by cancelling runCtx.
	runCtx, stopStages := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	goStage := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	defer func() { stopStages(); wg.Wait() }()

	capture, err := app.CDC(ctx, b, cdc.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	goStage("cdc", capture.Run)
	consumer, err := app.Consumer(ctx, b, app.ConsumerOptions{Shards: 2, PollInterval: 100 * time.Millisecond, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	goStage("consumer", consumer.Run)
	renderer := templates.NewRenderer(templates.RendererConfig{Getenv: func(k string) string {
		if k == "TAILOR_CONTENT_URL" {
			return contentURL
		}
		return os.Getenv(k)
	}})
	prefs, err := startPreferenceCenter(ctx, b, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer prefs.Stop(context.WithoutCancel(ctx)) //nolint:errcheck
	say("preference center at %s", prefs.URL)
	workers, err := app.Workers(ctx, b, jobs.Config{Renderer: renderer, Logger: cfg.Logger, Links: prefs.Links})
	if err != nil {
		return nil, err
	}
	if err := workers.Start(runCtx); err != nil {
		return nil, err
	}
	defer func() {
		stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer c()
		_ = workers.Stop(stopCtx)
	}()

	// Seed: customers in Postgres (CDC copies them), product views on Kinesis (the consumer counts them).
	ids, err := seedCustomers(ctx, b, cfg.Customers)
	if err != nil {
		return nil, err
	}
	say("seeded %d customers in Postgres", len(ids))
	evs := make([]events.Event, 0, len(ids)*cfg.Views)
	now := time.Now().UTC()
	for i, id := range ids {
		for v := range cfg.Views {
			evs = append(evs, events.Event{
				EventID: fmt.Sprintf("demo-%s-%d-%d", id, v, now.UnixNano()), CustomerID: id, Type: events.TypeProductView,
				Timestamp:  now.Add(-time.Duration(v) * time.Minute),
				Properties: events.Properties{ProductID: fmt.Sprintf("p-%d", (i+v)%12), Category: categories[(i+v)%len(categories)]},
			})
		}
	}
	producer, err := app.Producer(ctx, b, 2)
	if err != nil {
		return nil, err
	}
	if perEvent, err := events.Publish(ctx, producer, evs); err != nil {
		return nil, fmt.Errorf("demo: send events: %w", err)
	} else if err := errors.Join(perEvent...); err != nil {
		return nil, fmt.Errorf("demo: send events: %w", err)
	}
	say("sent %d product_view events to Kinesis stream %s", len(evs), b.Names.Stream)

	// Wait until CDC and the consumer have built every profile.
	if err := waitProfiles(ctx, profiles, ids, cfg.Views, errs); err != nil {
		return nil, err
	}
	say("profiles ready in DynamoDB table %s (CRM fields from CDC, view counts from Kinesis)", b.Names.Profiles)

	rc, err := jobs.NewInsertClient(b.Pool)
	if err != nil {
		return nil, err
	}
	// The marketer's lifecycle: a draft, then scheduled to send now (tailor campaign create,
	// then tailor campaign schedule --send-at now).
	camp, err := jobs.CreateCampaign(ctx, b.Pool, rc, jobs.NewCampaign{Name: "demo " + now.Format(time.RFC3339), Template: tpl,
		Segment: cfg.Segment})
	if err != nil {
		return nil, err
	}
	say("campaign %d created as a %s (template %s v%d, segment %q)", camp.ID, camp.Status, camp.TemplateName, camp.TemplateVersion, camp.Segment)
	if camp, err = jobs.Schedule(ctx, b.Pool, rc, camp.ID, jobs.SendAt{At: time.Now()}); err != nil {
		return nil, err
	}
	say("campaign %d %s to send now", camp.ID, camp.Status)
	done, err := jobs.WaitCampaign(ctx, b.Pool, camp.ID)
	if err != nil {
		return nil, err
	}
	if done.Status != jobs.StatusRendered {
		return nil, fmt.Errorf("demo: campaign %d ended %s: %s", camp.ID, done.Status, done.Error)
	}
	progress, err := jobs.GetProgress(ctx, b.Pool, camp.ID)
	if err != nil {
		return nil, err
	}
	say("campaign %d %s: audience %d, rendered %d, excluded %d, skipped %d, failed %d (tailor campaign report %d has the details)",
		camp.ID, progress.Status, progress.AudienceCount, progress.Counters[jobs.MessageRendered], progress.Counters[jobs.MessageExcluded],
		progress.Counters[jobs.MessageSkipped], progress.Counters[jobs.MessageFailed], camp.ID)
	msgs, err := jobs.ListMessages(ctx, b.Pool, camp.ID, 0, 100000)
	if err != nil {
		return nil, err
	}
	res := &Result{CampaignID: camp.ID, Customers: len(ids), Events: len(evs), Messages: msgs, Outcomes: map[string]int{}, Elapsed: time.Since(start)}
	for _, m := range msgs {
		for _, o := range sourceOutcomes(m) {
			res.Outcomes[o]++
		}
	}
	for _, m := range msgs[:min(cfg.Show, len(msgs))] {
		fmt.Fprintf(cfg.Out, "\n──────── message %d to %s <%s> (%s)\nSubject: %s\n\n%s\n", m.ID, m.CustomerID, m.Email, m.Status, m.Subject, strings.TrimSpace(m.Text))
	}
	if len(msgs) > 0 {
		fmt.Fprintln(cfg.Out)
		if err := prefs.showOneClick(ctx, b, msgs[0], cfg.Out); err != nil {
			return nil, err
		}
	}
	if res.Delivery, err = deliver(ctx, b, camp.ID, cfg); err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	fmt.Fprintf(cfg.Out, "\ndemo: %d customers, %d events -> campaign %d rendered %d messages (content: %s), delivered %d, suppressed %d, in %s\n",
		res.Customers, res.Events, res.CampaignID, len(msgs), outcomeSummary(res.Outcomes), res.Delivery.Sent, res.Delivery.Suppressed,
		res.Elapsed.Round(10*time.Millisecond))
	return res, nil
}

// deliver is the sender stage: the relay that tailor relay runs (app.Relay, claiming from
// Postgres, its outbox publishing the outcome events) delivers the campaign to the in-repo
// SMTP sink on 127.0.0.1 until the campaign has nothing left; recipients who unsubscribed
// since rendering are left out at claim.
func deliver(ctx context.Context, b *backends.Backends, campaignID int64, cfg Config) (delivery.Counts, error) {
	var none delivery.Counts
	sink, err := smtpsink.Start(smtpsink.Config{Addr: "127.0.0.1:0", Logger: cfg.Logger})
	if err != nil {
		return none, err
	}
	defer sink.Close()
	relay, store, closeSender, err := app.Relay(b, app.RelayOptions{
		SMTP:       delivery.SMTPConfig{URL: sink.URL()},
		MIME:       delivery.MIMEConfig{From: "Example Shop <news@shop.example>"},
		Relay:      delivery.RelayConfig{PollInterval: 100 * time.Millisecond, ProgressInterval: time.Hour},
		CampaignID: campaignID, Logger: cfg.Logger,
	})
	if err != nil {
		return none, err
	}
	defer closeSender()
	outbox, err := app.Outbox(ctx, b, 2, cfg.Logger)
	if err != nil {
		return none, err
	}
	if err := outbox.Start(ctx); err != nil {
		return none, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = outbox.Flush(sctx)
		_ = outbox.Stop(sctx)
	}()
	if err := relay.Start(ctx); err != nil {
		return none, err
	}
	fmt.Fprintf(cfg.Out, "\nrelay: delivering campaign %d to the SMTP sink at %s\n", campaignID, sink.Addr())
	for {
		done, err := store.CampaignDone(ctx, campaignID)
		if err != nil || done {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			stopErr := relay.Stop(sctx)
			cancel()
			if err = errors.Join(err, stopErr); err != nil {
				return none, fmt.Errorf("demo: relay: %w", err)
			}
			break
		}
		select {
		case <-ctx.Done():
			return none, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	counts, err := delivery.CampaignCounts(ctx, b.Pool, campaignID)
	if err != nil {
		return none, err
	}
	st := sink.Stats()
	fmt.Fprintf(cfg.Out, "relay: the sink accepted %d messages (%d bytes); delivery: sent %d, bounced %d, failed %d, suppressed %d at claim\n",
		st.Accepted, st.Bytes, counts.Sent, counts.BouncedHard+counts.BouncedSoft, counts.Failed, counts.Suppressed)
	return counts, nil
}

func seedCustomers(ctx context.Context, b *backends.Backends, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("demo-%04d", i+1)
		name := firstNames[i%len(firstNames)]
		_, err := b.Pool.Exec(ctx, `INSERT INTO customers (id, email, first_name, last_name, locale, country)
			VALUES ($1, $2, $3, $4, 'en', $5)
			ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name, updated_at = now()`,
			ids[i], fmt.Sprintf("%s.%d@example.com", strings.ToLower(asciiName(name)), i+1), name, "Demo", []string{"FR", "DE", "ES", "US"}[i%4])
		if err != nil {
			return nil, fmt.Errorf("demo: seed customer: %w", err)
		}
	}
	return ids, nil
}

func asciiName(s string) string {
	return strings.NewReplacer("é", "e", "á", "a", "ó", "o").Replace(s)
}

func waitProfiles(ctx context.Context, store *profile.Store, ids []string, views int, errs <-chan error) error {
	delay := 50 * time.Millisecond
	for {
		got, err := store.BatchGet(ctx, ids)
		if err != nil {
			return err
		}
		ready := 0
		for _, id := range ids {
			p := got[id]
			if p == nil || p.CRM.Email == "" {
				continue
			}
			if p.Behaviour.Counts[events.TypeProductView] >= int64(views) {
				ready++
			}
		}
		if ready == len(ids) {
			return nil
		}
		select {
		case err := <-errs:
			return err
		case <-ctx.Done():
			return fmt.Errorf("demo: only %d of %d profiles complete: %w", ready, len(ids), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

func sourceOutcomes(m jobs.Message) []string {
	var prov templates.Provenance
	if err := json.Unmarshal(m.Provenance, &prov); err != nil {
		return nil
	}
	var out []string
	for _, s := range prov.Sources {
		out = append(out, s.Outcome)
	}
	return out
}

func outcomeSummary(o map[string]int) string {
	if len(o) == 0 {
		return "no sources"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(o)) {
		parts = append(parts, fmt.Sprintf("%d %s", o[k], k))
	}
	return strings.Join(parts, ", ")
}
