package jobs_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates"
	"github.com/tailor-email/tailor/templates/contentdemo"
)

// seedEncoded writes profiles straight to the table with BatchWriteItem (25 items a call, a
// few calls at once): much faster than CDC for thousands of profiles.
func seedEncoded(t testing.TB, b bundle, ps []*profile.Profile) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	sem := make(chan struct{}, 8)
	for chunk := range slices.Chunk(ps, 25) {
		reqs := make([]types.WriteRequest, len(chunk))
		for i, p := range chunk {
			item, err := profile.Encode(p)
			require.NoError(t, err)
			reqs[i] = types.WriteRequest{PutRequest: &types.PutRequest{Item: item}}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			in := map[string][]types.WriteRequest{b.profiles.Table(): reqs}
			for len(in) > 0 {
				out, err := b.env.DynamoDB.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: in})
				if err != nil {
					errs <- err
					return
				}
				in = out.UnprocessedItems
			}
		})
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
}

func (b bundle) reader() *jobs.DynamoProfiles {
	return &jobs.DynamoProfiles{Store: b.profiles, DB: b.env.DynamoDB}
}

func startClient(t *testing.T, b bundle, cfg jobs.Config) {
	t.Helper()
	cfg.Pool, cfg.Profiles = b.env.Pool, b.reader()
	client, err := jobs.NewClient(cfg)
	require.NoError(t, err)
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(ctx)
	})
}

func create(t *testing.T, b bundle, in jobs.NewCampaign) *jobs.Campaign {
	t.Helper()
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	c, err := jobs.CreateCampaign(context.Background(), b.env.Pool, rc, in)
	require.NoError(t, err)
	return c
}

func wait(t *testing.T, b bundle, id int64, timeout time.Duration) *jobs.Progress {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := jobs.WaitCampaign(ctx, b.env.Pool, id)
	if err != nil {
		var jobErrs []string
		rows, qerr := b.env.Pool.Query(context.Background(), `SELECT kind || ' ' || state || ' ' || COALESCE(errors::text, '') FROM river_job WHERE errors IS NOT NULL LIMIT 3`)
		if qerr == nil {
			jobErrs, _ = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		require.NoError(t, err, "job errors: %v", jobErrs)
	}
	p, err := jobs.GetProgress(context.Background(), b.env.Pool, id)
	require.NoError(t, err)
	return p
}

// outcomes maps each customer to status/reason of its one row; a second row fails the test.
func outcomes(t *testing.T, b bundle, id int64) map[string]jobs.Message {
	t.Helper()
	out := map[string]jobs.Message{}
	after := int64(0)
	for {
		msgs, err := jobs.ListMessages(context.Background(), b.env.Pool, id, after, 1000)
		require.NoError(t, err)
		for _, m := range msgs {
			_, dup := out[m.CustomerID+"/"+m.Occurrence]
			require.False(t, dup, "two rows for %s", m.CustomerID)
			out[m.CustomerID+"/"+m.Occurrence] = m
			after = m.ID
		}
		if len(msgs) < 1000 {
			return out
		}
	}
}

func demoTemplate(t *testing.T, url string) *templates.Template {
	return writeFiles(t, map[string]string{
		"template.yaml": fmt.Sprintf(`name: flaky
version: 1
content:
  recs:
    url: "%s/recommendations?customer={{ customer.customer_id | url_encode }}"
    timeout: 300ms
    retries: 1
    cache_ttl: 60s
    fallback: {items: [{name: "Fallback pick"}]}
  offer:
    url: "%s/offer"
    timeout: 300ms
    cache_ttl: 60s
    fallback: {}
`, url, url),
		"subject": "Hi {{ customer.first_name }}",
		"html":    "<p>Hi {{ customer.first_name }}</p>{% for i in content.recs.items %}<li>{{ i.name }}</li>{% endfor %}",
		"text":    "Hi {{ customer.first_name }}",
	})
}

// A 5 000-recipient campaign with the demo content service failing 20 % of requests and
// spiking latency: exactly one message per eligible recipient; unsubscribed, non-consenting,
// suppressed, capped and out-of-segment customers get none, each recorded with its reason.
func TestCampaign_5000RecipientsOneMessageEachAndEveryExclusionRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 5000
	ps := make([]*profile.Profile, n)
	for i := range n {
		p := &profile.Profile{ID: fmt.Sprintf("c%05d", i), CRM: profile.CRM{Email: fmt.Sprintf("c%05d@example.com", i), FirstName: fmt.Sprint("N", i), Country: "FR"}}
		if i%50 == 49 {
			p.CRM.Country = "DE" // out of segment
		}
		ps[i] = p
	}
	seedEncoded(t, b, ps)
	// Postgres, the system of record for preferences: everyone subscribed and consenting, but
	// every 20th unsubscribed, every 25th without consent, every 40th suppressed.
	_, err := b.env.Pool.Exec(ctx, `
		INSERT INTO topics (name, default_status) VALUES ('news', 'unsubscribed');
		INSERT INTO customers (id, email) SELECT format('c%s', lpad(g::text, 5, '0')), format('c%s@example.com', lpad(g::text, 5, '0')) FROM generate_series(0, 4999) g;
		INSERT INTO subscriptions (customer_id, topic, status) SELECT id, 'news', CASE WHEN right(id, 5)::int % 20 = 19 THEN 'unsubscribed' ELSE 'subscribed' END FROM customers;
		INSERT INTO consents (customer_id, purpose, granted) SELECT id, 'email_marketing', right(id, 5)::int % 25 <> 24 FROM customers;
		INSERT INTO suppressions (email, reason, source) SELECT email, 'hard_bounce', 'test' FROM customers WHERE right(id, 5)::int % 40 = 39;`)
	require.NoError(t, err)

	content, err := contentdemo.NewHandler(contentdemo.Config{ErrorRate: 0.2, Jitter: 400 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(content)
	defer srv.Close()
	startClient(t, b, jobs.Config{})

	// A campaign a moment ago reached 30 of them: with a cap of 1 per day they are capped.
	tpl := demoTemplate(t, srv.URL)
	prior := create(t, b, jobs.NewCampaign{Template: tpl, Segment: `customer_id < "c00030"`, SendAt: sendNow()})
	require.Equal(t, jobs.StatusRendered, wait(t, b, prior.ID, time.Minute).Status)

	camp := create(t, b, jobs.NewCampaign{Template: tpl, Segment: `country == "FR"`, Topic: "news", SendAt: sendNow(), Cap: jobs.Cap{Count: 1, Window: 24 * time.Hour}})
	p := wait(t, b, camp.ID, 3*time.Minute)
	require.Equal(t, jobs.StatusRendered, p.Status, p.Error)

	got := outcomes(t, b, camp.ID)
	want := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("c%05d", i)
		switch {
		case i%50 == 49:
			continue // not in the segment: counted by the scan, not in the audience
		case i%40 == 39:
			want[id] = "suppressed"
		case i%20 == 19:
			want[id] = "unsubscribed"
		case i%25 == 24:
			want[id] = "no_consent"
		case i < 30:
			want[id] = "frequency_cap"
		default:
			want[id] = ""
		}
	}
	require.Len(t, got, len(want), "one row per audience member, no more")
	counts := map[string]int64{}
	for id, reason := range want {
		m, ok := got[id+"/"]
		require.True(t, ok, "no row for %s", id)
		if reason == "" {
			require.Equal(t, jobs.MessageRendered, m.Status, id)
			require.Contains(t, m.Subject, "Hi N")
		} else {
			require.Equal(t, jobs.MessageExcluded, m.Status, id)
			require.Equal(t, reason, m.Reason, id)
			counts[reason]++
		}
	}
	require.Equal(t, int64(n/50), p.Counters[jobs.CounterNotInSegment], "out-of-segment profiles are counted")
	require.Equal(t, len(want), p.AudienceCount)
	require.Equal(t, p.AudienceCount, p.Processed)
	for reason, c := range counts {
		require.Equal(t, c, p.Counters["reason:"+reason], reason)
	}
	src := p.Sources()
	require.Positive(t, src["recs"][templates.OutcomeFallback], "20%% errors show as fallbacks: %v", src)
	require.Equal(t, p.Counters[jobs.MessageRendered], src["offer"][templates.OutcomeFetched]+src["offer"][templates.OutcomeCached]+
		src["offer"][templates.OutcomeFallback]+src["offer"][templates.OutcomeStale], "every rendered message records its sources")
}

// Pause holds rendering (jobs snooze, nothing fails), resume goes on where it stopped, cancel
// marks unclaimed messages cancelled; illegal transitions are refused with a clear error.
func TestCampaign_PauseResumeCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ps := make([]*profile.Profile, 600)
	for i := range ps {
		ps[i] = &profile.Profile{ID: fmt.Sprintf("p%04d", i), CRM: profile.CRM{Email: fmt.Sprintf("p%d@example.com", i)}}
	}
	seedEncoded(t, b, ps)
	// A slow content source keeps the campaign running long enough to pause it.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":[]}`)
	}))
	defer slow.Close()
	tpl := writeTemplate(t, slow.URL, "2s")
	startClient(t, b, jobs.Config{BatchSize: 20, RenderConcurrency: 1, RenderWorkers: 2})

	draft := create(t, b, jobs.NewCampaign{Template: tpl, Segment: "true"})
	require.Equal(t, jobs.StatusDraft, draft.Status)
	_, err := jobs.Pause(ctx, b.env.Pool, draft.ID)
	require.ErrorIs(t, err, jobs.ErrIllegalTransition)
	require.ErrorContains(t, err, "is draft: cannot pause it")

	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	c, err := jobs.Schedule(ctx, b.env.Pool, rc, draft.ID, sendNow())
	require.NoError(t, err)
	require.Equal(t, jobs.StatusScheduled, c.Status)
	eventually(t, time.Minute, func() bool { p, _ := jobs.GetProgress(ctx, b.env.Pool, c.ID); return p.Processed > 0 })
	_, err = jobs.Pause(ctx, b.env.Pool, c.ID)
	require.NoError(t, err)
	// Within the pause delay the batches in flight finish and the others snooze: none runs.
	eventually(t, 10*time.Second, func() bool {
		var running, snoozed int
		require.NoError(t, b.env.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'running'),
			count(*) FILTER (WHERE state IN ('scheduled', 'available') AND metadata ? 'snoozes') FROM river_job WHERE kind = 'render.batch'`).Scan(&running, &snoozed))
		return running == 0 && snoozed > 0
	})
	p, err := jobs.GetProgress(ctx, b.env.Pool, c.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusPaused, p.Status)
	require.Less(t, p.Processed, 600, "paused before the end")
	var failed int
	require.NoError(t, b.env.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state IN ('discarded', 'cancelled') OR attempt > 1 AND errors IS NOT NULL`).Scan(&failed))
	require.Zero(t, failed, "held work is snoozed, not failed")

	_, err = jobs.Resume(ctx, b.env.Pool, c.ID)
	require.NoError(t, err)
	eventually(t, time.Minute, func() bool { p, _ = jobs.GetProgress(ctx, b.env.Pool, c.ID); return p.Status == jobs.StatusRendered })
	require.Len(t, outcomes(t, b, c.ID), 600, "resumed where it stopped: every recipient once")

	_, err = jobs.Resume(ctx, b.env.Pool, c.ID)
	require.ErrorContains(t, err, "is rendered: cannot resume it")
	_, err = jobs.Cancel(ctx, b.env.Pool, c.ID)
	require.NoError(t, err)
	for _, m := range outcomes(t, b, c.ID) {
		require.Equal(t, jobs.MessageCancelled, m.Status, "no sender gets a message of a cancelled campaign")
	}
	_, err = jobs.Cancel(ctx, b.env.Pool, 999)
	require.ErrorIs(t, err, jobs.ErrCampaignNotFound)
	require.ErrorContains(t, err, "campaign 999 not found")
}

func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not met within %s", timeout)
		time.Sleep(delay)
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// Local time across three time zones and quiet hours, with a controllable clock: each message's
// send time is 09:00 in the recipient's zone (tomorrow where it has passed), quiet hours hold a
// message until they end.
func TestCampaign_LocalTimeAndQuietHours(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 2026-03-10 12:00 UTC: 13:00 in Berlin (09:00 passed), 08:00 in New York, 21:00 in Tokyo.
	clock := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	seedEncoded(t, b, []*profile.Profile{
		{ID: "berlin", CRM: profile.CRM{Email: "b@example.com", Timezone: "Europe/Berlin"}},
		{ID: "newyork", CRM: profile.CRM{Email: "n@example.com", Timezone: "America/New_York"}},
		{ID: "tokyo", CRM: profile.CRM{Email: "t@example.com", Timezone: "Asia/Tokyo"}},
		{ID: "nozone", CRM: profile.CRM{Email: "z@example.com"}},
	})
	startClient(t, b, jobs.Config{Now: func() time.Time { return clock }, RenderAhead: 72 * time.Hour})
	tpl := writeFiles(t, map[string]string{"template.yaml": "name: t\nversion: 1\n", "subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"})

	local := create(t, b, jobs.NewCampaign{Template: tpl, Segment: "true", SendAt: jobs.SendAt{Local: "09:00"}, Timezone: "America/Sao_Paulo"})
	p := wait(t, b, local.ID, time.Minute)
	require.Equal(t, jobs.StatusRendered, p.Status, p.Error)
	got := outcomes(t, b, local.ID)
	at := func(zone string, y, m, d, h int) time.Time {
		loc, err := time.LoadLocation(zone)
		require.NoError(t, err)
		return time.Date(y, time.Month(m), d, h, 0, 0, 0, loc)
	}
	require.True(t, at("Europe/Berlin", 2026, 3, 11, 9).Equal(got["berlin/"].NotBefore), "Berlin: 09:00 passed, tomorrow: %s", got["berlin/"].NotBefore)
	require.True(t, at("America/New_York", 2026, 3, 10, 9).Equal(got["newyork/"].NotBefore), "New York: today: %s", got["newyork/"].NotBefore)
	require.True(t, at("Asia/Tokyo", 2026, 3, 11, 9).Equal(got["tokyo/"].NotBefore), "Tokyo: tomorrow: %s", got["tokyo/"].NotBefore)
	require.True(t, at("America/Sao_Paulo", 2026, 3, 10, 9).Equal(got["nozone/"].NotBefore), "no zone: the campaign's: %s", got["nozone/"].NotBefore)
	require.Equal(t, int64(2), p.Counters[jobs.CounterNextDay], "status says how many get it the next day")

	// Now, with quiet hours 21:00-08:00: Tokyo (21:00) waits until 08:00 there, New York (08:00)
	// is just out of them, Berlin (13:00) is not in them.
	quiet := create(t, b, jobs.NewCampaign{Template: tpl, Segment: "true", SendAt: jobs.SendAt{At: clock}, QuietHours: jobs.QuietHours{Start: 21 * 60, End: 8 * 60}})
	require.Equal(t, jobs.StatusRendered, wait(t, b, quiet.ID, time.Minute).Status)
	got = outcomes(t, b, quiet.ID)
	require.True(t, at("Asia/Tokyo", 2026, 3, 11, 8).Equal(got["tokyo/"].NotBefore), "held until the window ends: %s", got["tokyo/"].NotBefore)
	require.True(t, clock.Equal(got["newyork/"].NotBefore), "%s", got["newyork/"].NotBefore)
	require.True(t, clock.Equal(got["berlin/"].NotBefore), "%s", got["berlin/"].NotBefore)
	require.Equal(t, jobs.MessageRendered, got["tokyo/"].Status, "held, never dropped")
}

// A triggered campaign (abandoned cart): the consumer's profile write fires it, it renders after
// the delay, --cancel-if is checked then, and it fires once per window however many events.
func TestCampaign_TriggeredWithDelayAndCancelIfFiresOncePerWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	seedEncoded(t, b, []*profile.Profile{
		{ID: "cart", CRM: profile.CRM{Email: "cart@example.com"}},
		{ID: "bought", CRM: profile.CRM{Email: "bought@example.com"}},
	})
	startClient(t, b, jobs.Config{})
	tpl := writeFiles(t, map[string]string{"template.yaml": "name: cart\nversion: 1\n", "subject": "Your cart", "html": "<p>{{ customer.cart | size }} items</p>", "text": "cart"})
	camp := create(t, b, jobs.NewCampaign{Template: tpl, Segment: "true", Trigger: &jobs.Trigger{
		Expr: `event.type == "add_to_cart" && len(cart) > 0`, Delay: 2 * time.Second, CancelIf: `count_purchase > 0`, OncePer: 7 * 24 * time.Hour}})
	require.Equal(t, jobs.StatusDraft, camp.Status)
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	_, err = jobs.Schedule(ctx, b.env.Pool, rc, camp.ID, jobs.SendAt{})
	require.NoError(t, err)

	trig, err := jobs.NewTriggers(jobs.TriggerConfig{Pool: b.env.Pool, Insert: rc, Profiles: b.profiles})
	require.NoError(t, err)
	writer := profile.NewWriter(b.profiles, profile.WriterConfig{AfterWrite: trig.AfterWrite})
	now := time.Now().UTC()
	add := func(id, evID string, at time.Time) events.Event {
		return events.Event{EventID: evID, CustomerID: id, Type: events.TypeAddToCart, Timestamp: at, Properties: events.Properties{ProductID: "p1", Quantity: 1}}
	}
	start := time.Now()
	require.NoError(t, writer.Apply(ctx, []events.Event{add("cart", "e1", now), add("bought", "e2", now)}))
	// A second add to cart in the same window, and a redelivery of the first batch: nothing more.
	require.NoError(t, writer.Apply(ctx, []events.Event{add("cart", "e3", now.Add(time.Second))}))
	require.NoError(t, writer.Apply(ctx, []events.Event{add("cart", "e1", now)}))
	// "bought" purchases within the delay: cancel-if holds when it renders.
	require.NoError(t, writer.Apply(ctx, []events.Event{{EventID: "e4", CustomerID: "bought", Type: events.TypePurchase, Timestamp: now.Add(time.Second),
		Properties: events.Properties{OrderID: "o1", TotalMinor: 100, Currency: "EUR"}}}))

	eventually(t, time.Minute, func() bool { p, _ := jobs.GetProgress(ctx, b.env.Pool, camp.ID); return p.Processed >= 2 })
	got := outcomes(t, b, camp.ID)
	require.Len(t, got, 2)
	var cart, bought jobs.Message
	for k, m := range got {
		switch m.CustomerID {
		case "cart":
			cart = m
			require.Contains(t, k, "/")
		case "bought":
			bought = m
		}
	}
	require.Equal(t, jobs.MessageRendered, cart.Status)
	require.Equal(t, "<p>1 items</p>", cart.HTML)
	require.GreaterOrEqual(t, cart.CreatedAt.Sub(start), time.Second, "rendered after the delay")
	require.Equal(t, jobs.MessageExcluded, bought.Status)
	require.Equal(t, jobs.ReasonCancelIf, bought.Reason)

	// Still once per window: later events in the same week add nothing.
	require.NoError(t, writer.Apply(ctx, []events.Event{add("cart", "e5", now.Add(2*time.Second))}))
	var jobsN int
	require.NoError(t, b.env.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'render.triggered'`).Scan(&jobsN))
	require.Equal(t, 2, jobsN, "one job per customer and window")
	p, err := jobs.GetProgress(ctx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusRunning, p.Status, "a triggered campaign keeps listening")
	require.Equal(t, int64(1), p.Counters["reason:"+jobs.ReasonCancelIf])
}

// A recipient recorded by another run of the batch (two runs of one job at once) makes the
// batch's COPY conflict: the rest of the batch is recorded without a second row for that
// recipient, its row is left as the other run wrote it, and the counters count it once.
func TestCampaign_ARecipientRecordedMeanwhileIsNotRecordedTwice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var ps []*profile.Profile
	for i := range 5 {
		ps = append(ps, &profile.Profile{ID: fmt.Sprintf("d%d", i), CRM: profile.CRM{Email: fmt.Sprintf("d%d@example.com", i), FirstName: "D"}})
	}
	seedEncoded(t, b, ps)
	tpl := writeFiles(t, map[string]string{"template.yaml": "name: dup\nversion: 1\n", "subject": "Hi {{ customer.first_name }}", "html": "<p>Hi</p>", "text": "Hi"})
	camp := create(t, b, jobs.NewCampaign{Template: tpl, Segment: "true", SendAt: sendNow()})
	// The other run: its row, its processed count and its counter, as store records them.
	for _, stmt := range []string{
		`INSERT INTO rendered_messages (campaign_id, customer_id, email, status, subject) VALUES ($1, 'd3', 'd3@example.com', 'rendered', 'the other run')`,
		`UPDATE campaigns SET processed = processed + 1 WHERE id = $1`,
		`INSERT INTO campaign_counters (campaign_id, key, n) VALUES ($1, 'rendered', 1)`,
	} {
		_, err := b.env.Pool.Exec(ctx, stmt, camp.ID)
		require.NoError(t, err)
	}
	startClient(t, b, jobs.Config{})

	p := wait(t, b, camp.ID, time.Minute)
	require.Equal(t, jobs.StatusRendered, p.Status, p.Error)
	got := outcomes(t, b, camp.ID)
	require.Len(t, got, 5)
	require.Equal(t, "the other run", got["d3/"].Subject)
	require.Equal(t, "Hi D", got["d0/"].Subject)
	require.Equal(t, 5, p.AudienceCount)
	require.Equal(t, 5, p.Processed)
	require.Equal(t, int64(5), p.Counters[jobs.MessageRendered])
	requireBodyHashes(t, b, camp.ID, 5) // four through the fallback insert, one by the statement above (the trigger)
}
