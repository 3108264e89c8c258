package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"

	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/tracking"
	"github.com/tailor-email/tailor/preferences"
	"github.com/tailor-email/tailor/templates"
)

// Message statuses (rendered_messages.status).
const (
	MessageRendered  = "rendered"  // claimable by senders from its not_before
	MessageExcluded  = "excluded"  // left out by a rule: Reason is no_consent, suppressed, frequency_cap, ...
	MessageSkipped   = "skipped"   // left out by rendering: a content source's skip_recipient, a budget breach
	MessageFailed    = "failed"    // the template failed for this recipient's data
	MessageCancelled = "cancelled" // the campaign was cancelled before a sender claimed it
)

// Reasons recorded with excluded recipients besides preferences' (suppressed, unsubscribed,
// no_consent, no_address).
const (
	ReasonFrequencyCap = "frequency_cap"
	ReasonCancelIf     = "cancel_if"
	ReasonNotInSegment = "not_in_segment"
)

type renderWorker struct {
	river.WorkerDefaults[RenderBatchArgs]
	w *campaignWorkers
}

// Timeout bounds one run (see NewClient).
func (r *renderWorker) Timeout(*river.Job[RenderBatchArgs]) time.Duration {
	return r.w.cfg.RenderTimeout
}

// Work renders one batch and records every recipient's outcome in one transaction.
func (r *renderWorker) Work(ctx context.Context, job *river.Job[RenderBatchArgs]) error {
	cfg := r.w.cfg
	id := job.Args.CampaignID
	st, err := r.w.status(ctx, id)
	if err != nil {
		return err
	}
	if stop, err := r.w.held(st); stop {
		return err
	}
	d, err := r.w.definition(ctx, id)
	if err != nil {
		return err
	}
	if wait := job.Args.SendAt.Add(-cfg.RenderAhead).Sub(cfg.Now()); wait > time.Second {
		return river.JobSnooze(wait) // scheduled early (a clock step): render shortly before the send time
	}
	ids := job.Args.CustomerIDs
	if resumed(job.JobRow.Attempt, job.Metadata) {
		if ids, err = r.w.unrecorded(ctx, id, ids, ""); err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return nil
	}
	profiles, err := r.w.profiles(ctx, job.Args, ids)
	if err != nil {
		return err
	}
	recs := make([]recipient, len(ids))
	for i, cid := range ids {
		recs[i] = recipient{id: cid, p: profiles[cid], sendAt: job.Args.SendAt}
	}
	rest, err := r.w.renderAndStore(ctx, d, recs)
	if err != nil {
		return err
	}
	if rest {
		return river.JobSnooze(0) // the time slice ran out: the rest of the batch in a new run
	}
	return nil
}

// resumed reports whether a job ran before (a retry, a rescue, or a snooze after a partial
// run), so some of its recipients may be recorded already.
func resumed(attempt int, metadata []byte) bool {
	return attempt > 1 || bytes.Contains(metadata, []byte(`"snoozes"`))
}

// unrecorded returns the ids a previous run of the job did not record.
func (w *campaignWorkers) unrecorded(ctx context.Context, campaignID int64, ids []string, occurrence string) ([]string, error) {
	rows, err := w.cfg.Pool.Query(ctx, queries.Get("already-recorded"), campaignID, ids, occurrence)
	if err != nil {
		return nil, fmt.Errorf("campaign %d: recorded recipients: %w", campaignID, err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("campaign %d: recorded recipients: %w", campaignID, err)
	}
	seen := make(map[string]bool, len(done))
	for _, id := range done {
		seen[id] = true
	}
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// profiles returns a batch's profiles: those the fan-out handed off in this process, and the
// rest (all of them when the job runs elsewhere, or again) read with BatchGetItem.
func (w *campaignWorkers) profiles(ctx context.Context, args RenderBatchArgs, ids []string) (map[string]*profile.Profile, error) {
	held := w.handoff.take(batchKey(args.CampaignID, args.SendAt, args.CustomerIDs))
	out := make(map[string]*profile.Profile, len(ids))
	var missing []string
	for _, id := range ids {
		if p, ok := held[id]; ok {
			out[id] = p
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	read, err := w.cfg.Profiles.BatchGet(ctx, missing)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, read)
	return out, nil
}

// recipient is one customer a render job records an outcome for.
type recipient struct {
	id         string
	p          *profile.Profile // nil when the profile no longer exists
	sendAt     time.Time
	occurrence string // "" for a batch campaign; the trigger window for a triggered one
	excluded   string // a reason decided before rendering (cancel_if), or ""
}

// outcome is what is recorded for a recipient.
type outcome struct {
	r      recipient
	done   bool // recorded in this run
	email  string
	status string
	reason string
	key    string // the counter of the reason
	msg    *templates.Message
}

// renderAndStore checks eligibility, renders the eligible recipients (RenderConcurrency at a
// time, for at most RenderSlice) and records every outcome. rest is true when the slice ran
// out before every recipient was rendered: the caller snoozes to do the rest.
func (w *campaignWorkers) renderAndStore(ctx context.Context, d *definition, recs []recipient) (rest bool, err error) {
	cfg := w.cfg
	c := d.c
	start := time.Now()
	outs := make([]outcome, len(recs))
	var check []preferences.Recipient
	for i, r := range recs {
		outs[i] = outcome{r: r, done: true}
		switch {
		case r.p == nil || !r.p.Reachable():
			// Erased or emptied since the fan-out.
			outs[i].status, outs[i].reason = MessageExcluded, preferences.ReasonNoAddress
		case r.excluded != "":
			outs[i].email, outs[i].status, outs[i].reason = r.p.CRM.Email, MessageExcluded, r.excluded
		default:
			outs[i].email = r.p.CRM.Email
			check = append(check, preferences.Recipient{CustomerID: r.id, Email: r.p.CRM.Email})
		}
	}
	reasons, err := preferences.Check(ctx, cfg.Pool, c.Topic, check)
	if errors.Is(err, preferences.ErrUnknownTopic) {
		return false, w.fail(ctx, c.ID, err) // the topic was archived: nobody can be checked
	}
	if err != nil {
		return false, err
	}
	var todo []int
	for i := range outs {
		if outs[i].status != "" {
			continue
		}
		if reason, ok := reasons[outs[i].r.id]; ok {
			outs[i].status, outs[i].reason = MessageExcluded, reason
			continue
		}
		todo = append(todo, i)
	}

	campaign := map[string]any{"id": c.ID, "name": c.Name}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fault error
		sem   = make(chan struct{}, cfg.RenderConcurrency)
	)
	for _, i := range todo {
		if time.Since(start) > cfg.RenderSlice || ctx.Err() != nil {
			outs[i].done, rest = false, true
			continue
		}
		mu.Lock()
		stop := fault != nil
		mu.Unlock()
		if stop {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := w.render(ctx, d, campaign, &outs[i]); err != nil {
				mu.Lock()
				fault = cmpErr(fault, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if fault != nil {
		if templates.IsTemplateFault(fault) {
			// The template breaches a budget whatever the recipient: every recipient would fail
			// the same way, so the campaign fails now, with the budget and where.
			return false, w.fail(ctx, c.ID, fault)
		}
		return false, fault // ctx ended
	}
	if err := w.store(ctx, c, outs); err != nil {
		return false, err
	}
	return rest, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// render renders one recipient into o; it returns only errors that stop the batch: a template
// fault, or ctx's end.
func (w *campaignWorkers) render(ctx context.Context, d *definition, campaign map[string]any, o *outcome) error {
	cfg := w.cfg
	data := RenderData(o.r.p, campaign, cfg.Now())
	if cfg.Links != nil {
		data.UnsubscribeURL, data.PreferencesURL = cfg.Links(d.c.ID, d.c.Topic, o.r.id)
	}
	began := time.Now()
	msg, err := cfg.Renderer.Render(ctx, d.tpl, data)
	observeRender(time.Since(began))
	switch {
	case err == nil:
		if !d.c.Track.IsZero() && cfg.Tracker != nil {
			msg.HTML = cfg.Tracker.Rewrite(msg.HTML, tracking.Message{CampaignID: d.c.ID, CustomerID: o.r.id,
				Occurrence: o.r.occurrence, Track: d.c.Track})
		}
		o.status, o.msg = MessageRendered, msg
	case errors.Is(err, templates.ErrSkipRecipient):
		o.status, o.reason, o.key = MessageSkipped, err.Error(), "skip_recipient"
	case ctx.Err() != nil:
		return err
	case templates.IsTemplateFault(err):
		return err
	case errors.Is(err, templates.ErrBudgetExceeded):
		// This recipient's data (say, a huge content array) breaches a budget: only they go.
		o.status, o.reason, o.key = MessageSkipped, err.Error(), "budget_exceeded"
	default:
		o.status, o.reason, o.key = MessageFailed, err.Error(), "render_error"
	}
	return nil
}

// store records the outcomes in one transaction: the frequency cap (under per-customer locks),
// the rows, the campaign's processed counter (which completes it) and the breakdown counters.
func (w *campaignWorkers) store(ctx context.Context, c *Campaign, outs []outcome) error {
	var committed map[string]int64
	err := pgx.BeginFunc(ctx, w.cfg.Pool, func(tx pgx.Tx) error {
		if !c.Cap.IsZero() {
			if err := applyCap(ctx, tx, c.Cap, outs); err != nil {
				return err
			}
		}
		var rows messageRows
		byID := make(map[string]*outcome, len(outs))
		for i := range outs {
			o := &outs[i]
			if !o.done {
				continue
			}
			byID[o.r.id] = o
			rows.add(o)
		}
		if len(rows.customer) == 0 {
			return nil
		}
		inserted, err := insertMessages(ctx, tx, c.ID, &rows)
		if err != nil {
			return err
		}
		var status string
		if err := tx.QueryRow(ctx, queries.Get("count-recorded"), c.ID, len(inserted)).Scan(&status); err != nil {
			return fmt.Errorf("count recorded messages: %w", err)
		}
		counts := map[string]int64{}
		for _, id := range inserted {
			o := byID[id]
			if status == StatusCancelled && o.status == MessageRendered {
				o.status = MessageCancelled
			}
			o.count(counts)
		}
		if status == StatusCancelled && len(inserted) > 0 {
			if _, err := tx.Exec(ctx, queries.Get("cancel-inserted"), c.ID, inserted); err != nil {
				return fmt.Errorf("cancel rendered messages: %w", err)
			}
		}
		committed = counts
		return addCounters(ctx, tx, c.ID, counts)
	})
	if err == nil {
		countCommitted(c.TemplateName, committed)
	}
	return err
}

// messageColumns are the rendered_messages columns a batch writes, in messageRows.row order.
var messageColumns = []string{"campaign_id", "customer_id", "email", "status", "subject", "preheader", "html", "text_body",
	"headers", "provenance", "reason", "not_before", "occurrence", "variant", "body_sha256"}

// insertMessages records a batch's rows and returns the customers it recorded. It COPYs them,
// streamed in 64 KB chunks (an INSERT of unnest arrays made pgx assemble every ~11 KB body of
// the batch in one parameter buffer grown step by step: about seven times the batch's size in
// allocations, most of the render workers' CPU and memory). The batch's recipients are not
// recorded yet (a resumed job left out those it recorded before), so the COPY inserts them all;
// should one be recorded after all (two runs of one job at once), the COPY's savepoint is
// rolled back and the rows go in with INSERT ... ON CONFLICT DO NOTHING, which skips it.
func insertMessages(ctx context.Context, tx pgx.Tx, campaignID int64, rows *messageRows) ([]string, error) {
	err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.CopyFrom(ctx, pgx.Identifier{"rendered_messages"}, messageColumns, pgx.CopyFromSlice(len(rows.customer),
			func(i int) ([]any, error) { return rows.row(campaignID, i), nil }))
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return rows.customer, nil
	case !errors.As(err, &pgErr) || pgErr.Code != "23505": // unique_violation
		return nil, fmt.Errorf("store rendered messages: %w", err)
	}
	var inserted []string
	if err := tx.QueryRow(ctx, queries.Get("insert-messages"), campaignID, rows.customer, rows.email, rows.status, rows.subject,
		rows.preheader, rows.html, rows.text, rows.headers, rows.provenance, rows.reason, rows.notBefore, rows.occurrence,
		rows.variant, rows.bodyHash).Scan(&inserted); err != nil {
		return nil, fmt.Errorf("store rendered messages: %w", err)
	}
	return inserted, nil
}

// count adds the outcome's counter keys: its status, its reason, and for a rendered message its
// variant and where each content source's content came from.
func (o *outcome) count(counts map[string]int64) {
	counts[o.status]++
	switch {
	case o.status == MessageExcluded:
		counts["reason:"+o.reason]++
	case o.key != "":
		counts["reason:"+o.key]++
	case o.msg != nil:
		counts["variant:"+o.msg.Provenance.Variant]++
		for name, s := range o.msg.Provenance.Sources {
			counts["source:"+name+":"+s.Outcome]++
		}
	}
}

// applyCap excludes the rendered recipients who already have Count messages within the cap's
// window of their send time, across campaigns. Advisory locks per customer, in key order,
// make two campaigns rendering one customer at once take turns.
func applyCap(ctx context.Context, tx pgx.Tx, cp Cap, outs []outcome) error {
	var ids []string
	var ats []time.Time
	for _, o := range outs {
		if o.done && o.status == MessageRendered {
			ids = append(ids, o.r.id)
			ats = append(ats, o.r.sendAt)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, queries.Get("lock-customers"), ids); err != nil {
		return fmt.Errorf("frequency cap: lock customers: %w", err)
	}
	rows, err := tx.Query(ctx, queries.Get("recent-sends"), ids, ats, int64(cp.Window/time.Second))
	if err != nil {
		return fmt.Errorf("frequency cap: %w", err)
	}
	sent := map[string]int64{}
	var id string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { sent[id] = n; return nil })
	if err != nil {
		return fmt.Errorf("frequency cap: %w", err)
	}
	for i := range outs {
		o := &outs[i]
		if o.done && o.status == MessageRendered && sent[o.r.id] >= int64(cp.Count) {
			o.status, o.reason, o.msg = MessageExcluded, ReasonFrequencyCap, nil
		}
	}
	return nil
}

// messageRows holds a batch column-wise for the unnest insert.
type messageRows struct {
	customer, email, status, subject, preheader, html, text, occurrence, variant []string
	headers, provenance, bodyHash                                                [][]byte
	reason                                                                       []*string
	notBefore                                                                    []time.Time
}

var emptyJSON = []byte("{}")

// row returns row i in messageColumns order.
func (m *messageRows) row(campaignID int64, i int) []any {
	return []any{campaignID, m.customer[i], m.email[i], m.status[i], m.subject[i], m.preheader[i], m.html[i], m.text[i],
		m.headers[i], m.provenance[i], m.reason[i], m.notBefore[i], m.occurrence[i], m.variant[i], m.bodyHash[i]}
}

func (m *messageRows) add(o *outcome) {
	msg := o.msg
	if msg == nil {
		msg = &templates.Message{}
	}
	m.customer = append(m.customer, o.r.id)
	m.email = append(m.email, o.email)
	m.status = append(m.status, o.status)
	m.subject = append(m.subject, msg.Subject)
	m.preheader = append(m.preheader, msg.Preheader)
	m.html = append(m.html, msg.HTML)
	m.text = append(m.text, msg.Text)
	m.occurrence = append(m.occurrence, o.r.occurrence)
	m.variant = append(m.variant, msg.Provenance.Variant)
	h, prov := emptyJSON, emptyJSON
	if len(msg.Headers) > 0 {
		h, _ = json.Marshal(msg.Headers)
	}
	if o.msg != nil {
		prov, _ = json.Marshal(msg.Provenance)
	}
	m.headers = append(m.headers, h)
	m.provenance = append(m.provenance, prov)
	if o.reason == "" {
		m.reason = append(m.reason, nil)
	} else {
		r := o.reason
		m.reason = append(m.reason, &r)
	}
	at := o.r.sendAt
	if at.IsZero() {
		at = time.Now()
	}
	m.notBefore = append(m.notBefore, at)
	var sum []byte
	if o.status == MessageRendered {
		sum = BodyHash(msg.HTML, msg.Text)
	}
	m.bodyHash = append(m.bodyHash, sum)
}

// BodyHash is rendered_messages.body_sha256 of a body: SHA-256 of the html, a NUL and the text,
// the formula of the insert trigger (migration 008), which takes it for rows that bring none.
// The render jobs bring it: hashing in Postgres cost it about 1.3 CPU-seconds per 100 000
// bodies of ~11 KB; Go hashes with the CPU's SHA extensions.
// The digest reads the bodies in place: it is no io.StringWriter, so io.WriteString copied
// each ~11 KB body first (a third of the hash's cost).
func BodyHash(html, text string) []byte {
	h := sha256.New()
	_, _ = h.Write(unsafe.Slice(unsafe.StringData(html), len(html))) // Write neither keeps nor changes it
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(unsafe.Slice(unsafe.StringData(text), len(text)))
	return h.Sum(make([]byte, 0, sha256.Size))
}

// RenderData is what a recipient's message is rendered from: the profile's read view as
// customer.*, with the recipient's id (variant assignment) and locale (money and dates).
func RenderData(p *profile.Profile, campaign map[string]any, now time.Time) templates.RenderData {
	return templates.RenderData{CustomerID: p.ID, Customer: p.Fields(now), Locale: p.CRM.Locale, Campaign: campaign, Now: now}
}
