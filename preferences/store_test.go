package preferences_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/preferences"
)

type fixture struct {
	env   *testenv.Env
	store *preferences.Store
	now   time.Time
}

// setup gives a test its own database with topics news (opt-in), tips (opt-out) and old
// (archived), and customers c-1 (ada@example.com, locale de-DE) and c-2.
func setup(t *testing.T, cfg preferences.Config) *fixture {
	t.Helper()
	env := testenv.New(t)
	cfg.DB = env.Pool
	store, err := preferences.NewStore(cfg)
	require.NoError(t, err)
	exec(t, env, `
		INSERT INTO topics (name, description, default_status) VALUES ('news', 'Weekly news', 'unsubscribed'), ('tips', 'Tips and tricks', 'subscribed');
		INSERT INTO topics (name, archived_at) VALUES ('old', now());
		INSERT INTO customers (id, email, locale) VALUES ('c-1', 'Ada@Example.com', 'de-DE'), ('c-2', 'bob@example.com', NULL);`)
	return &fixture{env: env, store: store, now: time.Now().UTC()}
}

func exec(t *testing.T, env *testenv.Env, sql string, args ...any) {
	t.Helper()
	_, err := env.Pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

func count(t *testing.T, env *testenv.Env, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, env.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func changeSet(customer string, at time.Time, topics map[string]string, consents ...preferences.ConsentChange) []byte {
	cs := map[string]any{"customer_id": customer, "occurred_at": at.UTC().Format(time.RFC3339Nano)}
	if topics != nil {
		cs["topics"] = topics
	}
	if consents != nil {
		cs["consents"] = consents
	}
	b, _ := json.Marshal(cs)
	return b
}

func status(t *testing.T, env *testenv.Env, customer, topic string) string {
	t.Helper()
	var s string
	err := env.Pool.QueryRow(context.Background(), `SELECT status FROM subscriptions WHERE customer_id = $1 AND topic = $2`, customer, topic).Scan(&s)
	if err != nil {
		return "none"
	}
	return s
}

func TestReceive_AppliesOnceAndReplaysTheSameAnswer(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	body := changeSet("c-1", f.now.Add(-time.Minute), map[string]string{"news": "subscribed"},
		preferences.ConsentChange{Purpose: "email_marketing", Granted: true, Source: "signup-form"})
	answer, replayed, err := f.store.Receive(ctx, preferences.Delivery{ID: "msg_1", Body: body})
	require.NoError(t, err)
	require.False(t, replayed)
	var r preferences.Receipt
	require.NoError(t, json.Unmarshal(answer, &r))
	require.Equal(t, "accepted", r.Status)
	require.Equal(t, "c-1", r.CustomerID)
	require.Equal(t, []string{"news"}, r.Applied.Topics)
	require.Equal(t, []string{"email_marketing"}, r.Applied.Consents)
	require.Positive(t, r.AuditID)
	require.Equal(t, "subscribed", status(t, f.env, "c-1", "news"))
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM consents WHERE customer_id = 'c-1' AND purpose = 'email_marketing' AND granted AND source = 'signup-form'`))
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM subscriptions WHERE customer_id = 'c-1' AND source = 'webhook'`))

	// The same delivery again: the same answer, byte for byte, and nothing applied twice.
	again, replayed, err := f.store.Receive(ctx, preferences.Delivery{ID: "msg_1", Body: body})
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, string(answer), string(again))
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit WHERE request_id = 'msg_1'`))

	// The same id with another body: a conflict, and nothing applied.
	other := changeSet("c-1", f.now, map[string]string{"news": "unsubscribed"})
	_, _, err = f.store.Receive(ctx, preferences.Delivery{ID: "msg_1", Body: other})
	var conflict *preferences.ConflictError
	require.ErrorAs(t, err, &conflict)
	require.Contains(t, conflict.Error(), "msg_1")
	require.Equal(t, "subscribed", status(t, f.env, "c-1", "news"))

	// After the retention period the id may be used again.
	exec(t, f.env, `UPDATE webhook_deliveries SET received_at = now() - interval '25 hours'`)
	_, replayed, err = f.store.Receive(ctx, preferences.Delivery{ID: "msg_1", Body: other})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, "unsubscribed", status(t, f.env, "c-1", "news"))
	n, err := f.store.PurgeDeliveries(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the record was taken over, not left behind")
}

func TestReceive_OlderChangesDoNotOverwriteNewerOnes(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	t0 := f.now.Add(-time.Hour)
	send := func(id string, at time.Time, topic, st string, granted bool) preferences.Receipt {
		t.Helper()
		ans, _, err := f.store.Receive(ctx, preferences.Delivery{ID: id, Body: changeSet("c-1", at, map[string]string{topic: st},
			preferences.ConsentChange{Purpose: "email_marketing", Granted: granted})})
		require.NoError(t, err)
		var r preferences.Receipt
		require.NoError(t, json.Unmarshal(ans, &r))
		return r
	}
	// Delivered out of order: the change of t0+2m arrives before the one of t0+1m.
	r := send("late", t0.Add(2*time.Minute), "news", "subscribed", true)
	require.Equal(t, []string{"news"}, r.Applied.Topics)
	r = send("early", t0.Add(time.Minute), "news", "unsubscribed", false)
	require.Empty(t, r.Applied.Topics)
	require.Equal(t, []string{"news"}, r.Stale.Topics)
	require.Equal(t, []string{"email_marketing"}, r.Stale.Consents)
	require.Equal(t, "subscribed", status(t, f.env, "c-1", "news"))
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM consents WHERE customer_id = 'c-1' AND granted`))
	// The stale change is still in the audit log, marked stale.
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit WHERE request_id = 'early' AND outcome->'stale'->'topics' ? 'news'`))

	r = send("newest", t0.Add(3*time.Minute), "news", "unsubscribed", false)
	require.Equal(t, []string{"news"}, r.Applied.Topics)
	require.Equal(t, "unsubscribed", status(t, f.env, "c-1", "news"))

	// A CRM row written now is newer than a webhook change from an hour ago.
	exec(t, f.env, `INSERT INTO subscriptions (customer_id, topic, status, source) VALUES ('c-2', 'tips', 'unsubscribed', 'crm')`)
	ans, _, err := f.store.Receive(ctx, preferences.Delivery{ID: "old", Body: changeSet("c-2", t0, map[string]string{"tips": "subscribed"})})
	require.NoError(t, err)
	require.Contains(t, string(ans), `"stale":{"topics":["tips"]`)
	require.Equal(t, "unsubscribed", status(t, f.env, "c-2", "tips"))
}

func TestReceive_RefusesUnknownCustomersTopicsAndSharedAddresses(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	at := f.now.Add(-time.Minute)
	_, _, err := f.store.Receive(ctx, preferences.Delivery{ID: "a", Body: changeSet("nobody", at, map[string]string{"news": "subscribed"})})
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
	require.Contains(t, err.Error(), `no customer has id "nobody"`)

	body := []byte(`{"email":"nobody@example.com","occurred_at":"` + at.Format(time.RFC3339) + `","topics":{"news":"subscribed"}}`)
	_, _, err = f.store.Receive(ctx, preferences.Delivery{ID: "b", Body: body})
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
	require.NotContains(t, err.Error(), "nobody@example.com", "addresses never reach reasons (they end up in dead letters)")

	for _, topic := range []string{"nope", "old"} {
		_, _, err = f.store.Receive(ctx, preferences.Delivery{ID: "c-" + topic, Body: changeSet("c-1", at, map[string]string{topic: "subscribed"})})
		var ve *preferences.ValidationError
		require.ErrorAs(t, err, &ve, topic)
		require.Equal(t, "/topics/"+topic, ve.Field)
	}

	exec(t, f.env, `INSERT INTO customers (id, email) VALUES ('c-3', 'BOB@example.com')`)
	body = []byte(`{"email":"bob@example.com","occurred_at":"` + at.Format(time.RFC3339) + `","topics":{"news":"subscribed"}}`)
	_, _, err = f.store.Receive(ctx, preferences.Delivery{ID: "d", Body: body})
	var conflict *preferences.ConflictError
	require.ErrorAs(t, err, &conflict)
	require.Zero(t, count(t, f.env, `SELECT count(*) FROM subscriptions`), "nothing refused was applied")
	require.Zero(t, count(t, f.env, `SELECT count(*) FROM webhook_deliveries`), "refusals are not remembered")

	// By address when it is unique, case-insensitively.
	ans, _, err := f.store.Receive(ctx, preferences.Delivery{ID: "e", Body: []byte(`{"email":"ADA@example.com","occurred_at":"` + at.Format(time.RFC3339) + `","topics":{"news":"subscribed"}}`)})
	require.NoError(t, err)
	require.Contains(t, string(ans), `"customer_id":"c-1"`)
}

func TestReceive_CreatesUnknownCustomersWhenConfigured(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{CreateCustomers: true})
	body := []byte(`{"customer_id":"new-1","email":"New@Example.com","occurred_at":"` + f.now.Format(time.RFC3339) + `","topics":{"news":"subscribed"}}`)
	_, _, err := f.store.Receive(t.Context(), preferences.Delivery{ID: "n", Body: body})
	require.NoError(t, err)
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM customers WHERE id = 'new-1' AND email = 'new@example.com'`))
	require.Equal(t, "subscribed", status(t, f.env, "new-1", "news"))
	// Without an address there is nothing to create a customer from.
	_, _, err = f.store.Receive(t.Context(), preferences.Delivery{ID: "m", Body: changeSet("new-2", f.now, map[string]string{"news": "subscribed"})})
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
}

func TestReceive_ConcurrentDeliveriesOfOneIDApplyOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	body := changeSet("c-1", f.now, map[string]string{"news": "subscribed", "tips": "unsubscribed"})
	const n = 8
	answers := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _, err := f.store.Receive(context.Background(), preferences.Delivery{ID: "dup", Body: body})
			answers[i], errs[i] = string(a), err
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, answers[0], answers[i])
	}
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit`))
}

func TestAudit_IsAppendOnly(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	_, _, err := f.store.Receive(t.Context(), preferences.Delivery{ID: "a", Body: changeSet("c-1", f.now, map[string]string{"news": "subscribed"})})
	require.NoError(t, err)
	for _, sql := range []string{`UPDATE preference_audit SET source = 'x'`, `DELETE FROM preference_audit`} {
		_, err := f.env.Pool.Exec(t.Context(), sql)
		require.ErrorContains(t, err, "append-only", sql)
	}
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit`))
}

func TestTopics_CreateListArchive(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	tp, err := f.store.CreateTopic(ctx, preferences.NewTopic{Name: "offers", Description: "Deals"})
	require.NoError(t, err)
	require.Equal(t, "unsubscribed", tp.DefaultStatus, "opt-in by default")
	_, err = f.store.CreateTopic(ctx, preferences.NewTopic{Name: "offers"})
	require.ErrorIs(t, err, preferences.ErrTopicExists)
	_, err = f.store.CreateTopic(ctx, preferences.NewTopic{Name: "old"})
	require.ErrorIs(t, err, preferences.ErrTopicExists, "archived names are taken too")
	for _, bad := range []preferences.NewTopic{{Name: "Bad Name"}, {Name: "x", DefaultStatus: "maybe"}, {Name: "y", Description: string(make([]byte, 501))}} {
		_, err = f.store.CreateTopic(ctx, bad)
		require.ErrorIs(t, err, preferences.ErrInvalidChange, bad.Name)
	}
	list, err := f.store.Topics(ctx, false)
	require.NoError(t, err)
	var names []string
	for _, t := range list {
		names = append(names, t.Name)
	}
	require.Equal(t, []string{"news", "offers", "tips"}, names)

	archived, err := f.store.ArchiveTopic(ctx, "offers")
	require.NoError(t, err)
	require.True(t, archived.Archived())
	again, err := f.store.ArchiveTopic(ctx, "offers")
	require.NoError(t, err)
	require.Equal(t, archived.ArchivedAt, again.ArchivedAt, "archiving twice keeps the first time")
	_, err = f.store.ArchiveTopic(ctx, "nope")
	require.ErrorIs(t, err, preferences.ErrUnknownTopic)
	all, err := f.store.Topics(ctx, true)
	require.NoError(t, err)
	require.Len(t, all, 4)
	_, err = preferences.Check(ctx, f.env.Pool, "offers", []preferences.Recipient{{CustomerID: "c-1", Email: "ada@example.com"}})
	require.ErrorIs(t, err, preferences.ErrUnknownTopic, "an archived topic takes no new sends")
}

func TestPage_ShowsStateAndSavesChoicesOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	claims := preferences.Claims{CustomerID: "c-1", CampaignID: 4, Topic: "news"}
	p, err := f.store.Page(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, "de-DE", p.Locale)
	require.Equal(t, "A***@Example.com", p.MaskedEmail())
	require.Equal(t, []preferences.TopicChoice{{Name: "news", Description: "Weekly news", Status: "unsubscribed"}, {Name: "tips", Description: "Tips and tricks", Status: "subscribed"}}, p.Topics,
		"archived topics are not listed; defaults apply without a row")

	p, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true, "tips": true, "old": true}})
	require.NoError(t, err)
	require.True(t, p.Topics[0].Subscribed())
	require.Equal(t, "subscribed", status(t, f.env, "c-1", "news"))
	require.Equal(t, "none", status(t, f.env, "c-1", "tips"), "unchanged topics are not written")
	require.Equal(t, "none", status(t, f.env, "c-1", "old"), "only listed topics can be chosen")
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit WHERE source = 'preference_page' AND request_id = 'campaign:4'`))
	_, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true, "tips": true}})
	require.NoError(t, err)
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit`), "saving the same choices writes nothing")

	// Unsubscribe from everything, then undo it.
	p, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}, UnsubscribeAll: true})
	require.NoError(t, err)
	require.True(t, p.UnsubscribedAll)
	require.Equal(t, "unsubscribed", status(t, f.env, "c-1", "tips"))
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM suppressions WHERE email = 'ada@example.com' AND customer_id = 'c-1' AND reason = 'unsubscribed' AND source = 'preference_page'`))
	p, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}})
	require.NoError(t, err)
	require.False(t, p.UnsubscribedAll)
	require.Zero(t, count(t, f.env, `SELECT count(*) FROM suppressions`))

	// A bounce is not the recipient's to undo.
	exec(t, f.env, `INSERT INTO suppressions (email, reason, source) VALUES ('ada@example.com', 'hard_bounce', 'ses')`)
	p, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}})
	require.NoError(t, err)
	require.Equal(t, "hard_bounce", p.Blocked)
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM suppressions`))

	_, err = f.store.Page(ctx, preferences.Claims{CustomerID: "gone"})
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
}

// A recipient subscribed to a topic but without consent gets no campaign on it; the page says
// so with its own box, and ticking it makes them eligible (unticking withdraws it again).
func TestPage_GivesAndWithdrawsMarketingConsent(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	claims := preferences.Claims{CustomerID: "c-1", CampaignID: 4, Topic: "news"}
	ada := []preferences.Recipient{{CustomerID: "c-1", Email: "ada@example.com"}}
	yes, no := true, false

	p, err := f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}})
	require.NoError(t, err)
	require.False(t, p.MarketingConsent)
	reasons, err := preferences.Check(ctx, f.env.Pool, "news", ada)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"c-1": preferences.ReasonNoConsent}, reasons, "a ticked topic alone brings no campaign")

	p, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}, MarketingConsent: &yes})
	require.NoError(t, err)
	require.True(t, p.MarketingConsent)
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM consents WHERE customer_id = 'c-1' AND purpose = 'email_marketing' AND granted AND source = 'preference_page'`))
	reasons, err = preferences.Check(ctx, f.env.Pool, "news", ada)
	require.NoError(t, err)
	require.Empty(t, reasons, "subscribed and consenting: eligible")
	audits := count(t, f.env, `SELECT count(*) FROM preference_audit`)

	_, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}, MarketingConsent: &yes})
	require.NoError(t, err)
	_, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}})
	require.NoError(t, err)
	require.Equal(t, audits, count(t, f.env, `SELECT count(*) FROM preference_audit`), "the same consent again, or a form without the box, writes nothing")
	require.True(t, consentGranted(t, f.env, "c-1"))

	p, err = f.store.SavePage(ctx, claims, preferences.Choices{Subscribed: map[string]bool{"news": true}, MarketingConsent: &no})
	require.NoError(t, err)
	require.False(t, p.MarketingConsent)
	require.False(t, consentGranted(t, f.env, "c-1"), "withdrawn as easily as given")
	reasons, err = preferences.Check(ctx, f.env.Pool, "news", ada)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"c-1": preferences.ReasonNoConsent}, reasons)
	require.Equal(t, "subscribed", status(t, f.env, "c-1", "news"), "the topic stays as ticked")
}

func consentGranted(t *testing.T, env *testenv.Env, customer string) bool {
	t.Helper()
	var granted bool
	require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT granted FROM consents WHERE customer_id = $1 AND purpose = 'email_marketing'`, customer).Scan(&granted))
	return granted
}

func TestOneClick_UnsubscribesFromTheTopicOrEverythingIdempotently(t *testing.T) {
	t.Parallel()
	f := setup(t, preferences.Config{})
	ctx := t.Context()
	exec(t, f.env, `INSERT INTO subscriptions (customer_id, topic, status) VALUES ('c-1', 'news', 'subscribed')`)
	for i, want := range []bool{true, false, false} {
		res, err := f.store.OneClick(ctx, preferences.Claims{CustomerID: "c-1", CampaignID: 9, Topic: "news"})
		require.NoError(t, err)
		require.Equal(t, preferences.Unsubscribed{Topic: "news", Changed: want}, res, "attempt %d", i)
	}
	require.Equal(t, "unsubscribed", status(t, f.env, "c-1", "news"))
	require.Equal(t, 1, count(t, f.env, `SELECT count(*) FROM preference_audit WHERE source = 'one_click'`))
	require.Zero(t, count(t, f.env, `SELECT count(*) FROM suppressions`), "a topic's one-click is not a global unsubscribe")

	for i, want := range []bool{true, false} {
		res, err := f.store.OneClick(ctx, preferences.Claims{CustomerID: "c-2", CampaignID: 9})
		require.NoError(t, err)
		require.Equal(t, preferences.Unsubscribed{Changed: want}, res, "attempt %d", i)
	}
	got, err := preferences.Check(ctx, f.env.Pool, "", []preferences.Recipient{{CustomerID: "c-2", Email: "bob@example.com"}})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"c-2": preferences.ReasonSuppressed}, got)
	_, err = f.store.OneClick(ctx, preferences.Claims{CustomerID: "gone"})
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
}
