package preferences_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/internal/testenv/cdcrun"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/preferences"
)

// mentions counts, per table, the rows whose text (and bytea columns, read as text) contains
// needle in any case: the check that nothing is left of a customer.
func mentions(t *testing.T, env *testenv.Env, needle string) map[string]int {
	t.Helper()
	ctx := context.Background()
	rows, err := env.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "customers")
	out := map[string]int{}
	for _, table := range tables {
		conds := []string{`x::text ILIKE '%' || $1 || '%'`}
		rows, err := env.Pool.Query(ctx, `SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND data_type = 'bytea'`, table)
		require.NoError(t, err)
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		for _, c := range cols {
			conds = append(conds, fmt.Sprintf(`position(lower($1) IN lower(encode(x.%s, 'escape'))) > 0`, pgx.Identifier{c}.Sanitize()))
		}
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %s x WHERE %s`, pgx.Identifier{table}.Sanitize(), strings.Join(conds, " OR "))
		require.NoError(t, env.Pool.QueryRow(ctx, q, needle).Scan(&n))
		if n > 0 {
			out[table] = n
		}
	}
	return out
}

// rawProfile is the profile item as JSON text, "" when there is none.
func rawProfile(t *testing.T, env *testenv.Env, id string) string {
	t.Helper()
	out, err := env.DynamoDB.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(env.Names.Profiles), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{profile.AttrID: &types.AttributeValueMemberS{Value: id}},
	})
	require.NoError(t, err)
	if out.Item == nil {
		return ""
	}
	var m map[string]any
	require.NoError(t, attributevalue.UnmarshalMap(out.Item, &m))
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

// The whole erasure, end to end: a customer known to every table, the profile (CDC and
// events) and the stream; after forget no table and no profile mentions the address or the
// id, a suppression still blocks the address, and events still in the stream do not bring a
// profile back.
func TestForget_LeavesNoTraceAndEventsDoNotRecreateTheProfile(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 1)
	env := e.Env
	ctx := t.Context()
	const id, email = "cust-forget-7f3a", "Forget.Me.7f3a@Example.org"
	lower := strings.ToLower(email)
	store, err := preferences.NewStore(preferences.Config{DB: env.Pool})
	require.NoError(t, err)
	exec(t, env, `INSERT INTO topics (name) VALUES ('news')`)
	exec(t, env, `INSERT INTO customers (id, email, first_name, locale) VALUES ($1, $2, 'Forgetta', 'fr-FR'), ('keep-1', 'keep@example.org', 'Kept', 'en')`, id, email)
	// Subscriptions, consents and an audit row through the webhook path (and its delivery record).
	_, _, err = store.Receive(ctx, preferences.Delivery{ID: "msg_forget", Body: []byte(`{"email":"` + email + `","occurred_at":"` +
		time.Now().UTC().Format(time.RFC3339) + `","topics":{"news":"subscribed"},"consents":[{"purpose":"email_marketing","granted":true}]}`)})
	require.NoError(t, err)
	_, err = store.OneClick(ctx, preferences.Claims{CustomerID: id, CampaignID: 1}) // global unsubscribe: a suppression
	require.NoError(t, err)
	exec(t, env, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment) VALUES ('c', 't', 1, '{}', 'true')`)
	exec(t, env, `INSERT INTO rendered_messages (campaign_id, customer_id, email, subject, html) VALUES (1, $1, $2, 'Bonjour Forgetta', '<p>Forgetta</p>'),
			(1, 'keep-1', 'keep@example.org', 'Hi', '')`, id, email)
	// A finished render job names the customer in its arguments (River keeps finished jobs a day).
	exec(t, env, `INSERT INTO river_job (args, kind, max_attempts, state, finalized_at)
			VALUES (jsonb_build_object('campaign_id', 1, 'customer_ids', jsonb_build_array($1::text, 'keep-1')), 'render.batch', 10, 'completed', now())`, id)
	exec(t, env, `INSERT INTO dead_letters (source, reason, payload) VALUES
			('events.api', 'bad event', convert_to('{"customer_id":"' || $1 || '","type":"x"}', 'UTF8')),
			('webhook', 'bad', convert_to('{"email":"' || upper($2) || '"}', 'UTF8')),
			('events.api', 'other customer', convert_to('{"customer_id":"' || $1 || 'x"}', 'UTF8')),
			('events.api', 'binary', '\xff00'::bytea || convert_to($2, 'UTF8'))`, id, email)

	// The profile: CRM fields from CDC, behaviour from the stream.
	cdcrun.Start(t, env, nil)
	var applied atomic.Int64
	e.StartConsumer(t, eventpath.Consumer{AfterApply: func(b events.AppliedBatch) { applied.Add(int64(len(b.Events))) }})
	view := func(n int) []events.Event {
		var evs []events.Event
		for i := range n {
			evs = append(evs, events.Event{EventID: fmt.Sprintf("forget-%d-%d", n, i), CustomerID: id, Type: events.TypeProductView,
				Timestamp: time.Now().UTC().Add(-time.Minute), Properties: events.Properties{ProductID: "p-1", Category: "shoes"}})
		}
		return evs
	}
	e.Send(t, view(3))
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		p, err := e.Store.Get(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		return p.CRM.Email == email && p.Behaviour.Counts[events.TypeProductView] == 3 && p.Subscribed("news"), fmt.Sprintf("%+v", p.CRM)
	})
	require.NotEmpty(t, mentions(t, env, lower), "the address is everywhere before")
	exported, err := store.Export(ctx, e.Store, email)
	require.NoError(t, err)
	require.Equal(t, []string{id}, exported.CustomerIDs)
	require.Len(t, exported.Customers, 1)
	require.Len(t, exported.Subscriptions, 1)
	require.Len(t, exported.Consents, 1)
	require.Len(t, exported.Suppressions, 1)
	require.Len(t, exported.RenderedMessages, 1)
	require.Len(t, exported.DeadLetters, 3, "the id as a JSON string and the address in any case, not id+'x'")
	require.Len(t, exported.WebhookDeliveries, 1)
	require.Len(t, exported.PreferenceAudit, 2)
	require.EqualValues(t, 3, exported.Profiles[id]["count_product_view"])

	got, err := store.Forget(ctx, e.Store, email)
	require.NoError(t, err)
	require.Equal(t, []string{id}, got.Customers)
	require.Equal(t, int64(1), got.KeptSuppressions)
	require.Equal(t, map[string]int64{"customers": 1, "subscriptions": 1, "consents": 1, "suppressions": 1, "rendered_messages": 1, "river_job": 1,
		"preference_audit": 2, "webhook_deliveries": 1, "dead_letters": 3}, got.Deleted)

	require.Empty(t, mentions(t, env, lower), "no table mentions the address")
	require.Empty(t, mentions(t, env, id+`"`), "nor the id (as JSON) ...")
	require.Equal(t, map[string]int{"dead_letters": 1}, mentions(t, env, id), "... but for the other customer's dead letter, whose id only starts with it")
	require.Equal(t, 1, count(t, env, `SELECT count(*) FROM customers WHERE id = 'keep-1'`), "other customers stay")
	require.Equal(t, 1, count(t, env, `SELECT count(*) FROM rendered_messages WHERE customer_id = 'keep-1'`))
	require.Equal(t, 1, count(t, env, `SELECT count(*) FROM preference_audit WHERE source = 'erasure' AND customer_id IS NULL AND id = $1`, got.AuditID))

	// The address stays suppressed, by its hash, for whoever has it next.
	reasons, err := preferences.Check(ctx, env.Pool, "", []preferences.Recipient{{CustomerID: "new-id", Email: lower}})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"new-id": preferences.ReasonSuppressed}, reasons)

	// CDC applies the deletes; the profile holds nothing but the erasure marker.
	lsn := cdcrun.WALPosition(t, env)
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) { return cdcrun.CaughtUp(ctx, env, lsn) })
	p, err := e.Store.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, p.Erased())
	require.False(t, p.Reachable())
	require.Zero(t, p.Behaviour.Counts[events.TypeProductView])
	raw := rawProfile(t, env, id)
	require.NotContains(t, strings.ToLower(raw), lower)
	require.NotContains(t, raw, "Forgetta")
	require.NotContains(t, raw, "shoes")

	// Events still in the stream (and new ones) for the id do not recreate a profile.
	before := applied.Load()
	e.Send(t, view(5))
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		return applied.Load() >= before+5, fmt.Sprint(applied.Load()-before, " of 5 applied")
	})
	p, err = e.Store.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, p.Erased())
	require.Zero(t, p.Behaviour.Counts[events.TypeProductView], "the writer refused to aggregate into the erased profile")
	require.NotContains(t, rawProfile(t, env, id), "shoes")

	// Forgetting again is harmless; an address nothing is held about is unknown.
	_, err = store.Forget(ctx, e.Store, id)
	require.NoError(t, err)
	_, err = store.Forget(ctx, e.Store, "never@example.org")
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
	_, err = store.Export(ctx, e.Store, "never@example.org")
	require.ErrorIs(t, err, preferences.ErrUnknownCustomer)
}
