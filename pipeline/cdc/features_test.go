package cdc_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func TestCDC_PublicationCoversExactlyTheCRMTables(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// A publication left from an older version covering customers only is widened.
	f.exec(t, "CREATE PUBLICATION "+f.cfg.Publication+" FOR TABLE customers")
	c, _ := f.start(t, f.cfg)
	eventually(t, 30*time.Second, func() error {
		if !c.Active() || c.Confirmed() == 0 {
			return fmt.Errorf("not streaming yet")
		}
		return nil
	})
	rows, err := f.env.Pool.Query(ctx, "SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename", f.cfg.Publication)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"consents", "customers", "subscriptions"}, tables)
}

func TestCDC_SubscriptionsAndConsentsLandAsGuardedMaps(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('c1', 'c1@example.com')`)
	f.exec(t, `INSERT INTO subscriptions (customer_id, topic, status, source) VALUES ('c1', 'news', 'subscribed', 'web'), ('c1', 'promo', 'pending', 'crm')`)
	f.exec(t, `INSERT INTO consents (customer_id, purpose, granted, source) VALUES ('c1', 'marketing', true, 'web')`)
	p := f.waitPath(t, "c1", "consents.marketing.granted", true)
	require.Equal(t, "subscribed", path(p, "subscriptions.news.status"))
	require.Equal(t, "web", path(p, "subscriptions.news.source"))
	require.Equal(t, "pending", path(p, "subscriptions.promo.status"))

	f.exec(t, `UPDATE subscriptions SET status = 'unsubscribed', source = 'one-click' WHERE customer_id = 'c1' AND topic = 'news'`)
	f.exec(t, `UPDATE consents SET granted = false WHERE customer_id = 'c1'`)
	f.exec(t, `DELETE FROM subscriptions WHERE customer_id = 'c1' AND topic = 'promo'`)
	promoLSN := uint64(path(p, "subscriptions.promo.lsn").(float64))
	p = f.waitPath(t, "c1", "subscriptions.promo", nil) // deleted
	require.Equal(t, "unsubscribed", path(p, "subscriptions.news.status"))
	require.Equal(t, false, path(p, "consents.marketing.granted"))

	// An older version of an entry does not overwrite a newer one.
	newsLSN := uint64(path(p, "subscriptions.news.lsn").(float64))
	ok, err := f.store.ApplyEntry(context.Background(), "c1", profile.Subscriptions, "news", newsLSN-1, map[string]any{"status": "subscribed"})
	require.NoError(t, err)
	require.False(t, ok)
	// A deleted row leaves a tombstone that guards too: the insert's version cannot bring it back.
	ok, err = f.store.ApplyEntry(context.Background(), "c1", profile.Subscriptions, "promo", promoLSN, map[string]any{"status": "pending"})
	require.NoError(t, err)
	require.False(t, ok)
}

func TestCDC_BackfillsExistingRowsFromTheSlotSnapshot(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email, first_name) SELECT 'b' || g, 'b' || g || '@example.com', 'N' || g FROM generate_series(1, 250) g`)
	f.exec(t, `INSERT INTO subscriptions (customer_id, topic, status) SELECT 'b' || g, 'news', 'subscribed' FROM generate_series(1, 250) g`)
	f.exec(t, `INSERT INTO consents (customer_id, purpose, granted) VALUES ('b7', 'marketing', true)`)
	f.start(t, f.cfg)
	p := f.waitPath(t, "b250", "subscriptions.news.status", "subscribed")
	require.Equal(t, "N250", p["first_name"])
	p = f.waitPath(t, "b7", "consents.marketing.granted", true)

	var consistent string
	var rows int64
	eventually(t, 30*time.Second, func() error { // recorded once the backfill is complete
		return f.env.Pool.QueryRow(ctx, "SELECT consistent_lsn::text, backfilled_rows FROM cdc_slots WHERE slot_name = $1", f.cfg.Slot).Scan(&consistent, &rows)
	})
	require.EqualValues(t, 501, rows)
	require.Equal(t, consistent, lsnString(crmLSN(t, p)), "backfilled rows carry the snapshot's consistent point")

	// Changes after the snapshot stream in on top.
	f.exec(t, `UPDATE customers SET first_name = 'Later' WHERE id = 'b1'`)
	p = f.waitField(t, "b1", "first_name", "Later")
	require.Greater(t, crmLSN(t, p), parseLSN(t, consistent))
}

func TestCDC_RecreatesASlotWhoseBackfillNeverFinished(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// A process died after creating the slot, before the backfill was recorded: the slot's
	// position is past rows that never reached DynamoDB.
	f.exec(t, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, f.cfg.Slot)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('x1', 'x1@example.com')`)
	// What the dead process's partial backfill wrote for a row deleted since.
	_, err := f.store.ApplyCRM(ctx, "gone", 1, map[string]any{"email": "gone@example.com"}, nil)
	require.NoError(t, err)
	_, err = f.store.ApplyEntry(ctx, "x1", profile.Consents, "profiling", 1, map[string]any{"granted": true})
	require.NoError(t, err)
	c, _ := f.start(t, f.cfg)
	f.waitField(t, "x1", "email", "x1@example.com")
	eventually(t, 30*time.Second, func() error { // streaming starts after the backfill
		if c.Confirmed() == 0 {
			return fmt.Errorf("not streaming yet")
		}
		return nil
	})
	p, err := f.profile("gone")
	require.NoError(t, err)
	require.NotContains(t, p, "email", "the backfill erases rows the snapshot does not have")
	p, err = f.profile("x1")
	require.NoError(t, err)
	require.Nil(t, path(p, "consents.profiling.granted"))
	var n int
	require.NoError(t, f.env.Pool.QueryRow(ctx, "SELECT count(*) FROM cdc_slots WHERE slot_name = $1", f.cfg.Slot).Scan(&n))
	require.Equal(t, 1, n)
	require.True(t, c.Active())
}

func TestCDC_UnchangedToastedColumnsAreLeftAlone(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	// 12 KB of random text does not compress below the TOAST threshold: it is stored out of
	// line, and an UPDATE that does not touch it sends it as 'u' (unchanged), without a value.
	buf := make([]byte, 9000)
	_, _ = rand.Read(buf)
	big := base64.StdEncoding.EncodeToString(buf)
	f.exec(t, `INSERT INTO customers (id, email, first_name, attributes) VALUES ('t1', 't1@example.com', 'Before', jsonb_build_object('blob', $1::text, 'plan', 'pro'))`, big)
	p := f.waitField(t, "t1", "first_name", "Before")
	require.Equal(t, big, path(p, "attributes.blob"))

	var toasted int64
	require.NoError(t, f.env.Pool.QueryRow(context.Background(),
		`SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'customers' AND relnamespace = 'public'::regnamespace`).Scan(&toasted))
	require.Positive(t, toasted, "the attributes value is stored out of line")
	f.exec(t, `UPDATE customers SET first_name = 'After' WHERE id = 't1'`)
	p = f.waitField(t, "t1", "first_name", "After")
	require.Equal(t, big, path(p, "attributes.blob"), "the TOASTed attributes survive an update of first_name")
	require.Equal(t, "pro", path(p, "attributes.plan"))
}

func TestCDC_DeleteErasesTheCRMPartOfTheProfile(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email, first_name, attributes) VALUES ('g1', 'g1@example.com', 'Gone', '{"a":1}')`)
	f.exec(t, `INSERT INTO subscriptions (customer_id, topic, status) VALUES ('g1', 'news', 'subscribed')`)
	f.exec(t, `INSERT INTO consents (customer_id, purpose, granted) VALUES ('g1', 'marketing', true)`)
	f.waitPath(t, "g1", "consents.marketing.granted", true)
	// A behavioural feature written by the event consumer is not CDC's to erase.
	err := profile.NewWriter(f.store, profile.WriterConfig{}).Apply(ctx, []events.Event{{
		EventID: "ev-1", CustomerID: "g1", Type: events.TypeEmailClick, Timestamp: time.Now().UTC(), Properties: events.Properties{CampaignID: "k"},
	}})
	require.NoError(t, err)

	f.exec(t, `DELETE FROM customers WHERE id = 'g1'`) // cascades to subscriptions and consents
	var p view
	eventually(t, 30*time.Second, func() error {
		var err error
		if p, err = f.profile("g1"); err != nil {
			return err
		}
		if _, ok := p["email"]; ok {
			return fmt.Errorf("email still there: %v", p)
		}
		return nil
	})
	for _, k := range []string{"first_name", "attributes", "created_at", "crm_updated_at"} {
		require.NotContains(t, p, k)
	}
	require.Empty(t, p["subscriptions"])
	require.Empty(t, p["consents"])
	require.EqualValues(t, 1, p["count_email_click"], "behavioural features stay")

	// A replay of the consent from before the erasure cannot bring it back.
	lsn := crmLSN(t, p) // the delete's version, now the maps' floor
	ok, err := f.store.ApplyEntry(ctx, "g1", profile.Consents, "marketing", lsn-1, map[string]any{"granted": true})
	require.NoError(t, err)
	require.False(t, ok)

	// The customer may come back later.
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('g1', 'back@example.com')`)
	f.waitField(t, "g1", "email", "back@example.com")
}

func TestCDC_TruncateClearsEveryProfile(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email, first_name) SELECT 'r' || g, 'r' || g || '@example.com', 'R' FROM generate_series(1, 30) g`)
	f.exec(t, `INSERT INTO subscriptions (customer_id, topic, status) SELECT 'r' || g, 'news', 'subscribed' FROM generate_series(1, 30) g`)
	f.waitPath(t, "r30", "subscriptions.news.status", "subscribed")

	f.exec(t, `TRUNCATE subscriptions`)
	f.waitPath(t, "r17", "subscriptions.news", nil)

	// TRUNCATE and re-load in one transaction: the rows loaded after it survive it.
	_, err := f.env.Pool.Exec(context.Background(), `BEGIN;
		TRUNCATE customers CASCADE;
		INSERT INTO customers (id, email, first_name) VALUES ('r5', 'new5@example.com', 'New');
		COMMIT`)
	require.NoError(t, err)
	f.waitField(t, "r5", "email", "new5@example.com")
	eventually(t, 30*time.Second, func() error {
		for _, id := range []string{"r1", "r30"} {
			p, err := f.profile(id)
			if err != nil {
				return err
			}
			if _, ok := p["email"]; ok {
				return fmt.Errorf("%s still has an email", id)
			}
		}
		return nil
	})
	p, err := f.profile("r5")
	require.NoError(t, err)
	require.Equal(t, "New", p["first_name"])
}

func TestCDC_AddedColumnsReachProfiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('s1', 's1@example.com')`)
	f.waitField(t, "s1", "email", "s1@example.com")
	f.exec(t, `ALTER TABLE customers ADD COLUMN loyalty_tier text, ADD COLUMN vip boolean, ADD COLUMN updated_at_2 int`)
	f.exec(t, `UPDATE customers SET loyalty_tier = 'gold', vip = true, updated_at_2 = 7 WHERE id = 's1'`)
	p := f.waitPath(t, "s1", "attributes.loyalty_tier", "gold")
	require.Equal(t, true, path(p, "attributes.vip"))
	require.EqualValues(t, 7, path(p, "attributes.updated_at_2"), "a new column lands under attributes")
	f.exec(t, `ALTER TABLE customers DROP COLUMN vip`)
	f.exec(t, `INSERT INTO customers (id, email, loyalty_tier) VALUES ('s2', 's2@example.com', 'silver')`)
	f.waitPath(t, "s2", "attributes.loyalty_tier", "silver")
}

func TestCDC_ACRMColumnNamedOrdersCannotOverwriteBehaviour(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	ctx := context.Background()
	now := time.Now().UTC()
	w := profile.NewWriter(f.store, profile.WriterConfig{})
	require.NoError(t, w.Apply(ctx, []events.Event{
		{EventID: "o1", CustomerID: "o1", Type: events.TypePurchase, Timestamp: now, Properties: events.Properties{OrderID: "x", TotalMinor: 100, Currency: "EUR"}},
	}))
	f.exec(t, `ALTER TABLE customers ADD COLUMN orders int, ADD COLUMN count_purchase int, ADD COLUMN ev_state text, ADD COLUMN crm_lsn int`)
	f.exec(t, `INSERT INTO customers (id, email, orders, count_purchase, ev_state, crm_lsn) VALUES ('o1', 'o1@example.com', 42, 42, 'junk', 0)`)
	p := f.waitPath(t, "o1", "attributes.orders", 42)
	require.EqualValues(t, 1, p["orders"], "orders counts purchases")
	require.EqualValues(t, 1, p["count_purchase"])
	require.EqualValues(t, 42, path(p, "attributes.count_purchase"))
	require.Equal(t, "junk", path(p, "attributes.ev_state"))
	require.NoError(t, w.Apply(ctx, []events.Event{
		{EventID: "o2", CustomerID: "o1", Type: events.TypePurchase, Timestamp: now.Add(time.Second), Properties: events.Properties{OrderID: "y", TotalMinor: 100, Currency: "EUR"}},
	}), "the event path still reads and writes the profile")
	p, err := f.profile("o1")
	require.NoError(t, err)
	require.EqualValues(t, 2, p["orders"])
	require.Greater(t, p["crm_lsn"].(float64), float64(0), "the column crm_lsn did not replace the version")
}

func TestCDC_AcknowledgesOnlyAppliedChangesAndAdvancesWhenIdle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	c, _ := f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('a1', 'a1@example.com')`)
	p := f.waitField(t, "a1", "email", "a1@example.com")
	commit := crmLSN(t, p)
	eventually(t, 30*time.Second, func() error {
		lsn, ok := f.slotConfirmed(t)
		if !ok || parseLSN(t, lsn) <= commit {
			return fmt.Errorf("slot confirmed %s, want past the commit %s", lsn, lsnString(commit))
		}
		return nil
	})
	// Writes to tables outside the publication still move the slot (keepalives while idle),
	// so an idle CDC does not retain WAL without bound.
	f.exec(t, `CREATE TABLE unrelated (x int)`)
	f.exec(t, `INSERT INTO unrelated SELECT generate_series(1, 1000)`)
	var current string
	require.NoError(t, f.env.Pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&current))
	eventually(t, 30*time.Second, func() error {
		lsn, ok := f.slotConfirmed(t)
		if !ok || parseLSN(t, lsn) < parseLSN(t, current) {
			return fmt.Errorf("slot confirmed %s, want at least %s", lsn, current)
		}
		return nil
	})
	require.GreaterOrEqual(t, c.Confirmed(), parseLSN(t, current))
}

func TestCDC_StatusAndMetricsReportLag(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := cdc.ReadStatus(ctx, f.env.Pool, f.cfg.Slot)
	require.ErrorIs(t, err, cdc.ErrNoSlot)

	c, stop := f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('m1', 'm1@example.com')`)
	f.waitField(t, "m1", "email", "m1@example.com")
	require.True(t, c.Active())
	eventually(t, 30*time.Second, func() error {
		st, err := cdc.ReadStatus(ctx, f.env.Pool, f.cfg.Slot)
		if err != nil {
			return err
		}
		if !st.Active || st.BackfilledLSN == "" || st.ConfirmedFlushLSN == "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	stop()

	// Stopped: writes pile up as lag and retained WAL.
	f.exec(t, `INSERT INTO customers (id, email, attributes) SELECT 'm' || g, 'm@example.com', '{"k":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"}' FROM generate_series(2, 2000) g`)
	st, err := cdc.ReadStatus(ctx, f.env.Pool, f.cfg.Slot)
	require.NoError(t, err)
	require.False(t, st.Active)
	require.Greater(t, st.LagBytes, int64(100_000))
	require.GreaterOrEqual(t, st.RetainedBytes, st.LagBytes)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(cdc.NewCollector(f.env.Pool, f.cfg.Slot)))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 5)
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "tailor_cdc_slot_lag_bytes" {
			found = true
			require.GreaterOrEqual(t, mf.GetMetric()[0].GetGauge().GetValue(), float64(st.LagBytes))
		}
	}
	require.True(t, found, "tailor_cdc_slot_lag_bytes is exported")
}

func TestCDC_ResyncRepairsDriftedProfiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email, first_name) VALUES ('y1', 'y1@example.com', 'Right'), ('y2', 'y2@example.com', 'Two')`)
	f.exec(t, `INSERT INTO subscriptions (customer_id, topic, status) VALUES ('y1', 'news', 'subscribed')`)
	c, _ := f.start(t, f.cfg)
	p := f.waitPath(t, "y1", "subscriptions.news.status", "subscribed")
	lsn := crmLSN(t, p)
	eventually(t, 30*time.Second, func() error { // the initial backfill is over
		if c.Confirmed() == 0 {
			return fmt.Errorf("not streaming yet")
		}
		return nil
	})

	// Drift: a wrong value, a profile whose row is gone, an entry whose row is gone. Written
	// with the same version, as a bug or a restored backup would leave them.
	_, err := f.store.ApplyCRM(ctx, "y1", lsn-1, nil, nil)
	require.NoError(t, err)
	require.NoError(t, forceCRM(ctx, f, "y1", lsn, map[string]any{"first_name": "Wrong"}))
	require.NoError(t, forceCRM(ctx, f, "ghost", lsn, map[string]any{"email": "ghost@example.com"}))
	_, err = f.store.ApplyEntry(ctx, "y2", profile.Subscriptions, "promo", lsn, map[string]any{"status": "subscribed"})
	require.NoError(t, err)

	res, err := c.Resync(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, res.Rows)
	require.EqualValues(t, 2, res.Erased)
	p, err = f.profile("y1")
	require.NoError(t, err)
	require.Equal(t, "Right", p["first_name"])
	p, err = f.profile("ghost")
	require.NoError(t, err)
	require.NotContains(t, p, "email")
	p, err = f.profile("y2")
	require.NoError(t, err)
	require.Nil(t, path(p, "subscriptions.promo"), "the entry whose row is gone is erased")
	ok, err := f.store.ApplyEntry(ctx, "y2", profile.Subscriptions, "promo", lsn, map[string]any{"status": "subscribed"})
	require.NoError(t, err)
	require.False(t, ok, "and guarded by its tombstone")
	// Streaming goes on after a resync.
	f.exec(t, `UPDATE customers SET first_name = 'Newer' WHERE id = 'y1'`)
	f.waitField(t, "y1", "first_name", "Newer")
}

// forceCRM writes CRM fields with version lsn whatever the stored version (simulated drift).
func forceCRM(ctx context.Context, f *fixture, id string, lsn uint64, fields map[string]any) error {
	for v := lsn; ; v++ { // the smallest version above what is stored
		ok, err := f.store.ApplyCRM(ctx, id, v, fields, nil)
		if err != nil || ok {
			return err
		}
		if v > lsn+1_000_000 {
			return fmt.Errorf("could not write %s", id)
		}
	}
}

// path reads a dotted path of nested maps from a profile.
func path(p view, dotted string) any {
	var cur any = map[string]any(p)
	for _, k := range strings.Split(dotted, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func (f *fixture) waitPath(t *testing.T, id, dotted string, want any) view {
	t.Helper()
	var p view
	eventually(t, 30*time.Second, func() error {
		var err error
		if p, err = f.profile(id); err != nil {
			return err
		}
		if got := path(p, dotted); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("profile %s: %s = %v, want %v", id, dotted, got, want)
		}
		return nil
	})
	return p
}

func TestCDC_DeadLettersChangesDynamoDBRefusesAndGoesOn(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.cfg.DeadLetters = deadletter.NewStore(f.env.Pool)
	f.start(t, f.cfg)
	ctx := context.Background()
	// 500 KB of attributes: more than a DynamoDB item may hold.
	f.exec(t, `INSERT INTO customers (id, email, attributes) VALUES ('big', 'big@example.com', jsonb_build_object('blob', repeat('x', 500000)))`)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('after', 'after@example.com')`)
	f.waitField(t, "after", "email", "after@example.com")
	var reason string
	var payload []byte
	eventually(t, 30*time.Second, func() error { // written by another writer than 'after'
		return f.env.Pool.QueryRow(ctx, `SELECT reason, payload FROM dead_letters WHERE source = $1`, cdc.DeadLetterSource).Scan(&reason, &payload)
	})
	require.Contains(t, reason, "refused")
	require.Contains(t, string(payload), `"customer_id":"big"`)
	_, err := f.profile("big")
	require.ErrorIs(t, err, profile.ErrNotFound)
}
