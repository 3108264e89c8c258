package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates"
	"github.com/tailor-email/tailor/templates/rendermetrics"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func sendNow() jobs.SendAt { return jobs.SendAt{At: time.Now()} }

type bundle struct {
	env      *testenv.Env
	profiles *profile.Store
}

func setup(t testing.TB) bundle {
	t.Helper()
	env := testenv.New(t)
	store := profile.NewStore(env.DynamoDB, env.Names.Profiles)
	require.NoError(t, store.EnsureTable(context.Background()))
	return bundle{env: env, profiles: store}
}

// writeTemplate writes a small template whose one content source is at url.
func writeTemplate(t *testing.T, url, timeout string) *templates.Template {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"template.yaml": fmt.Sprintf(`name: jobs-test
version: 3
defaults:
  first_name: friend
content:
  recs:
    url: "%s/recs?c={{ customer.customer_id | url_encode }}"
    timeout: %s
    retries: 0
    cache_ttl: 0s
    fallback: {items: [{name: "Fallback pick"}]}
`, url, timeout),
		"subject": "Hi {{ customer.first_name }}",
		"html":    "<p>Hi {{ customer.first_name }}</p>{% for i in content.recs.items %}<li>{{ i.name }}</li>{% endfor %}",
		"text":    "Hi {{ customer.first_name }}\n{% for i in content.recs.items %}- {{ i.name }}\n{% endfor %}",
	}
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	tpl, err := templates.Load(dir)
	require.NoError(t, err)
	return tpl
}

func seedProfiles(t *testing.T, store *profile.Store, n int, withEmail func(i int) bool) {
	t.Helper()
	for i := range n {
		fields := map[string]any{"first_name": fmt.Sprintf("Name%02d", i), "country": "FR"} // columns of customers
		if withEmail(i) {
			fields["email"] = fmt.Sprintf("c%02d@example.com", i)
		}
		applied, err := store.ApplyCRM(context.Background(), fmt.Sprintf("c%02d", i), uint64(100+i), fields, nil)
		require.NoError(t, err)
		require.True(t, applied)
	}
}

func startWorkers(t *testing.T, b bundle) *river.Client[pgx.Tx] {
	t.Helper()
	client, err := jobs.NewClient(jobs.Config{Pool: b.env.Pool, Profiles: &jobs.DynamoProfiles{Store: b.profiles, DB: b.env.DynamoDB}, BatchSize: 7})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	})
	return client
}

func TestCreateCampaign_EnqueuesInSameTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)

	// A job inserted in a transaction that rolls back never exists.
	tx, err := b.env.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = rc.InsertTx(ctx, tx, jobs.CampaignStartArgs{CampaignID: 999}, nil)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	var n int
	require.NoError(t, b.env.Pool.QueryRow(ctx, "SELECT count(*) FROM river_job").Scan(&n))
	require.Zero(t, n)

	// A refused segment leaves neither a campaign nor a job.
	tpl := writeTemplate(t, "http://127.0.0.1:1", "100ms")
	_, err = jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: tpl, Segment: "contry == 'FR'"})
	require.ErrorContains(t, err, `did you mean "country"`)
	require.NoError(t, b.env.Pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM river_job) + (SELECT count(*) FROM campaigns)").Scan(&n))
	require.Zero(t, n)

	camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: tpl, Segment: "true", SendAt: sendNow()})
	require.NoError(t, err)
	job := rivertest.RequireInserted(ctx, t, riverpgxv5.New(b.env.Pool), &jobs.CampaignStartArgs{}, nil)
	require.Equal(t, camp.ID, job.Args.CampaignID)
	got, err := jobs.GetCampaign(ctx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusScheduled, got.Status)
	require.Equal(t, tpl.Files(), got.TemplateFiles, "the campaign keeps its own copy of the template")
}

func TestCampaign_RendersSegmentWithFetchedContent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	seedProfiles(t, b.profiles, 20, func(i int) bool { return i != 3 }) // c03 has no email
	// Only c00-c09 are in the segment (attributes set on them).
	for i := range 10 {
		_, err := b.profiles.ApplyCRM(ctx, fmt.Sprintf("c%02d", i), uint64(1000+i), map[string]any{"country": "DE"}, nil)
		require.NoError(t, err)
	}
	content := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"items":[{"name":"Pick for %s"}]}`, r.URL.Query().Get("c"))
	}))
	defer content.Close()
	startWorkers(t, b)
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Name: "de", Template: writeTemplate(t, content.URL, "2s"), Segment: `country == "DE"`, SendAt: sendNow()})
	require.NoError(t, err)

	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusRendered, done.Status, done.Error)
	require.Equal(t, 9, done.AudienceCount, "c00-c09 minus c03, which has no email")

	msgs, err := jobs.ListMessages(ctx, b.env.Pool, camp.ID, 0, 100)
	require.NoError(t, err)
	require.Len(t, msgs, 9)
	for _, m := range msgs {
		require.Equal(t, "rendered", m.Status)
		num := strings.TrimPrefix(m.CustomerID, "c")
		require.Equal(t, "Hi Name"+num, m.Subject)
		require.Contains(t, m.Text, "- Pick for "+m.CustomerID)
		require.Contains(t, m.HTML, "<li>Pick for "+m.CustomerID+"</li>")
		var prov templates.Provenance
		require.NoError(t, json.Unmarshal(m.Provenance, &prov))
		require.Equal(t, templates.OutcomeFetched, prov.Sources["recs"].Outcome)
		require.Equal(t, 3, prov.Version)
	}
	requireBodyHashes(t, b, camp.ID, 9)
}

// requireBodyHashes checks that the campaign's n rendered rows carry the body hash of their
// stored html and text, as the insert trigger's formula (migration 008) computes it in SQL.
func requireBodyHashes(t *testing.T, b bundle, campaignID int64, n int) {
	t.Helper()
	var total, matching int
	require.NoError(t, b.env.Pool.QueryRow(context.Background(), `SELECT count(*),
		count(*) FILTER (WHERE body_sha256 = sha256(convert_to(html, 'UTF8') || '\x00'::bytea || convert_to(text_body, 'UTF8')))
		FROM rendered_messages WHERE campaign_id = $1 AND status = 'rendered'`, campaignID).Scan(&total, &matching))
	require.Equal(t, n, total)
	require.Equal(t, n, matching, "body_sha256 differs from the hash of the stored body")
}

func TestCampaign_ContentFailureUsesFallback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		reason  string
	}{
		{"http 500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }, "500"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			seedProfiles(t, b.profiles, 5, func(int) bool { return true })
			content := httptest.NewServer(tc.handler)
			defer content.Close()
			startWorkers(t, b)
			rc, err := jobs.NewInsertClient(b.env.Pool)
			require.NoError(t, err)
			camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: writeTemplate(t, content.URL, "200ms"), Segment: "true", SendAt: sendNow()})
			require.NoError(t, err)
			waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			done, err := jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
			require.NoError(t, err)
			require.Equal(t, jobs.StatusRendered, done.Status, "a failing content API never fails a campaign")
			msgs, err := jobs.ListMessages(ctx, b.env.Pool, camp.ID, 0, 100)
			require.NoError(t, err)
			require.Len(t, msgs, 5)
			for _, m := range msgs {
				require.Equal(t, "rendered", m.Status)
				require.Contains(t, m.Text, "- Fallback pick")
				var prov templates.Provenance
				require.NoError(t, json.Unmarshal(m.Provenance, &prov))
				require.Equal(t, templates.OutcomeFallback, prov.Sources["recs"].Outcome)
				require.Contains(t, strings.ToLower(prov.Sources["recs"].Reason), tc.reason)
			}
		})
	}
}

// writeFiles writes a template folder and loads it.
func writeFiles(t *testing.T, files map[string]string) *templates.Template {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	tpl, err := templates.Load(dir)
	require.NoError(t, err)
	return tpl
}

func TestCampaign_ATemplateThatBreachesABudgetFailsTheCampaignNotTheWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	seedProfiles(t, b.profiles, 12, func(int) bool { return true })
	startWorkers(t, b)
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	hostile := writeFiles(t, map[string]string{
		"template.yaml": "name: hostile\nversion: 1\n", "subject": "Hi",
		"html": "<p>\n{% for i in (1..100000000) %}x{% endfor %}</p>", "text": "Hi {{ customer.first_name }}",
	})
	camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: hostile, Segment: "true", SendAt: sendNow()})
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusFailed, done.Status)
	require.Contains(t, done.Error, "html:2")
	require.Contains(t, done.Error, "loops ran over 100000 iterations", "the campaign says which budget and where")
	var retried int
	require.NoError(t, b.env.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'render.batch' AND attempt > 1`).Scan(&retried))
	require.Zero(t, retried, "a template fault is not retried")

	// The same workers go on rendering other campaigns.
	ok := writeFiles(t, map[string]string{"template.yaml": "name: fine\nversion: 1\n", "subject": "Hi", "html": "<p>Hi</p>", "text": "Hi {{ customer.first_name }}"})
	camp, err = jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: ok, Segment: "true", SendAt: sendNow()})
	require.NoError(t, err)
	done, err = jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusRendered, done.Status, done.Error)
}

func TestParseSegment_ErrorsSayWhatToFixAndWhere(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr, want string
		column     int
	}{
		{"", "empty expression", 0},
		{"contry == 'FR'", `unknown field "contry" (did you mean "country"?)`, 1},
		{"count_product_vew > 0", `unknown field "count_product_vew" (did you mean "count_product_view"?)`, 1},
		{"count_teleport_7d > 0", `unknown field "count_teleport_7d"`, 1},
		{`country == "FR" && zzz > 1`, "attributes.<name>", 20},
		{"country == 3", "mismatched types string and int", 9},
		{`count_purchase > "3"`, "mismatched types int64 and string", 16},
		{`created_at > 5`, "mismatched types time.Time and int", 12},
		{`subscriptions.news == true`, "mismatched types string and bool", 20},
		{"country ==", "unexpected", 0},
		{strings.Repeat("a", jobs.SegmentMaxLen+1), "over the 4096 limit", 0},
		{`"FR"`, "expected bool", 0},
	} {
		_, err := jobs.ParseSegment(tc.expr)
		require.ErrorIs(t, err, jobs.ErrInvalidSegment, tc.expr)
		require.Contains(t, err.Error(), tc.want, tc.expr)
		var se *jobs.SegmentError
		require.ErrorAs(t, err, &se)
		if tc.column > 0 {
			require.Equal(t, tc.column, se.Column, "%s: the error points at the token", tc.expr)
			require.Contains(t, se.Snippet, "^", tc.expr)
		}
	}
	for _, ok := range []string{
		`attributes.tier == "gold"`, `subscriptions.news == "subscribed" && consents.email_marketing`,
		`"shoes" in top_categories && category_affinity.shoes > 1.5`, `len(cart) > 0 && cart_value.EUR >= 5000`,
		`created_at < now() - duration("720h")`, `count_add_to_cart_24h > 0 && count_purchase_24h == 0`,
	} {
		_, err := jobs.ParseSegment(ok)
		require.NoError(t, err, ok)
	}
}

func TestSegment_MatchesTheProfileView(t *testing.T) {
	t.Parallel()
	seg, err := jobs.ParseSegment(`country == "FR" && count_product_view >= 2 && attributes.tier == "gold"`)
	require.NoError(t, err)
	require.Equal(t, []string{"country", "count_product_view", "attributes"}, seg.Fields())
	now := time.Now().UTC()
	views := func(n int) profile.Features {
		var f profile.Features
		for i := range n {
			f.Aggregate([]events.Event{{EventID: fmt.Sprint("v", i), CustomerID: "c", Type: events.TypeProductView, Timestamp: now, Properties: events.Properties{ProductID: "p"}}})
		}
		return f
	}
	for _, tc := range []struct {
		p    profile.Profile
		want bool
	}{
		{profile.Profile{CRM: profile.CRM{Country: "FR", Attributes: map[string]any{"tier": "gold"}}, Behaviour: views(2)}, true},
		{profile.Profile{CRM: profile.CRM{Country: "FR", Attributes: map[string]any{"tier": "gold"}}, Behaviour: views(1)}, false},
		{profile.Profile{CRM: profile.CRM{Country: "FR"}, Behaviour: views(3)}, false}, // a missing attribute is nil, not an error
		{profile.Profile{CRM: profile.CRM{Country: "DE", Attributes: map[string]any{"tier": "gold"}}, Behaviour: views(9)}, false},
	} {
		got, err := seg.Match(tc.p.Fields(now))
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%+v", tc.p.CRM)
	}
}

// MatchProfile gives Match's answer over the profile's view; literal segments (`true`) give
// their constant without the view, time-dependent ones (now()) do not count as literal.
func TestSegment_MatchProfileAgreesWithMatch(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	fr := &profile.Profile{ID: "c1", CRM: profile.CRM{Country: "FR", CreatedAt: now.Add(-time.Hour)}}
	de := &profile.Profile{ID: "c2", CRM: profile.CRM{Country: "DE", CreatedAt: now.Add(-1000 * time.Hour)}}
	for _, tc := range []struct {
		expr   string
		fr, de bool
	}{
		{`true`, true, true},
		{`false`, false, false},
		{`1 < 2 && !false`, true, true},
		{`country == "FR"`, true, false},
		{`created_at > now() - duration("24h")`, true, false},
	} {
		seg, err := jobs.ParseSegment(tc.expr)
		require.NoError(t, err, tc.expr)
		for _, c := range []struct {
			p    *profile.Profile
			want bool
		}{{fr, tc.fr}, {de, tc.de}} {
			got, err := seg.MatchProfile(c.p, now)
			require.NoError(t, err)
			require.Equal(t, c.want, got, "%s for %s", tc.expr, c.p.ID)
			viaView, err := seg.Match(c.p.Fields(now))
			require.NoError(t, err)
			require.Equal(t, viaView, got, "%s for %s", tc.expr, c.p.ID)
		}
	}
}

// Segments see behaviour as of the campaign's start: windowed counts are computed from the
// stored event state when the audience is scanned, not stored (they change as time passes).
func TestCampaign_SegmentOnWindowedBehaviour(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	seedProfiles(t, b.profiles, 6, func(int) bool { return true })
	now := time.Now().UTC()
	var evs []events.Event
	for i := range 6 {
		// c00-c02 viewed twice in the last hour; c03-c05 twice, but three days ago.
		at := now.Add(-10 * time.Minute)
		if i >= 3 {
			at = now.Add(-72 * time.Hour)
		}
		for v := range 2 {
			evs = append(evs, events.Event{EventID: fmt.Sprintf("w-%d-%d", i, v), CustomerID: fmt.Sprintf("c%02d", i),
				Type: events.TypeProductView, Timestamp: at.Add(time.Duration(v) * time.Second),
				Properties: events.Properties{ProductID: "p1", Category: "shoes"}})
		}
	}
	require.NoError(t, profile.NewWriter(b.profiles, profile.WriterConfig{}).Apply(ctx, evs))
	content := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":[]}`)
	}))
	defer content.Close()
	startWorkers(t, b)
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: writeTemplate(t, content.URL, "2s"),
		Segment: "count_product_view_24h >= 2 && count_product_view == 2", SendAt: sendNow()})
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusRendered, done.Status, done.Error)
	msgs, err := jobs.ListMessages(ctx, b.env.Pool, camp.ID, 0, 100)
	require.NoError(t, err)
	var got []string
	for _, m := range msgs {
		got = append(got, m.CustomerID)
	}
	require.ElementsMatch(t, []string{"c00", "c01", "c02"}, got)
}

// samples returns every sample of reg by name and labels ("name k=v k=v").
func samples(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// A campaign whose content API fails: the metrics count its recipients once committed, its
// fallbacks under the template's source, its renders, and the source's breaker opens.
func TestCampaign_MetricsCountRecipientsFallbacksAndBreaker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	for _, c := range append(jobs.MetricsCollectors(), rendermetrics.MetricsCollectors()...) {
		require.NoError(t, reg.Register(c))
	}
	before := samples(t, reg)
	seedProfiles(t, b.profiles, 6, func(int) bool { return true })
	content := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }))
	defer content.Close()
	startWorkers(t, b)
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	tpl := writeFiles(t, map[string]string{
		"template.yaml": "name: metrics-test\nversion: 1\ncontent:\n  recs:\n    url: \"" + content.URL + "/recs?c={{ customer.customer_id }}\"\n    timeout: 200ms\n    retries: 0\n    fallback: {items: []}\n",
		"subject":       "Hi", "html": "<p>Hi</p>", "text": "Hi",
	})
	camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: tpl, Segment: "true", SendAt: sendNow()})
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusRendered, done.Status)

	after := samples(t, reg)
	require.Equal(t, 6.0, after["tailor_content_source_outcomes_total outcome=fallback source=metrics-test/recs"]-before["tailor_content_source_outcomes_total outcome=fallback source=metrics-test/recs"])
	require.GreaterOrEqual(t, after["tailor_campaign_recipients_total status=rendered"]-before["tailor_campaign_recipients_total status=rendered"], 6.0)
	require.GreaterOrEqual(t, after["tailor_render_seconds"]-before["tailor_render_seconds"], 6.0)
	require.Equal(t, float64(templates.BreakerOpen), after["tailor_content_breaker_state source=metrics-test/recs"], "six failures in a row open the breaker")
}
