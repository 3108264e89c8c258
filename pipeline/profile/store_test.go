package profile_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func setupStore(t *testing.T) *profile.Store {
	t.Helper()
	env := testenv.New(t)
	s := profile.NewStore(env.DynamoDB, env.Names.Profiles)
	require.NoError(t, s.EnsureTable(t.Context()))
	return s
}

func purchase(id, customer string, at time.Time, total int64) events.Event {
	return events.Event{EventID: id, CustomerID: customer, Type: events.TypePurchase, Timestamp: at,
		Properties: events.Properties{OrderID: "o-" + id, TotalMinor: total, Currency: "EUR"}}
}

func TestStore_ACRMColumnNamedLikeAComputedFieldCannotOverwriteIt(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	w := profile.NewWriter(s, profile.WriterConfig{})
	require.NoError(t, w.Apply(ctx, []events.Event{purchase("e1", "c1", now.Add(-time.Hour), 1999), purchase("e2", "c1", now, 500)}))
	// A customers table with columns named like behavioural fields and bookkeeping.
	ok, err := s.ApplyCRM(ctx, "c1", 10, map[string]any{
		"email": "c1@example.com", "first_name": "Ana", "orders": int64(99), "ev_state": "junk", "ev_version": int64(-1),
		"count_purchase": int64(1000), "crm_lsn": int64(0), "erased_at": "2020-01-01T00:00:00Z", "attributes": map[string]any{"tier": "gold"},
		"created_at": "2026-01-02T03:04:05Z",
	}, nil)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, w.Apply(ctx, []events.Event{purchase("e3", "c1", now.Add(time.Second), 100)}), "the event path still writes")

	p, err := s.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, int64(3), p.Behaviour.Orders, "orders counts purchases, whatever the CRM has")
	require.False(t, p.Erased())
	f := p.Fields(now)
	require.Equal(t, int64(3), f["orders"])
	require.Equal(t, int64(3), f["count_purchase"])
	attrs := f["attributes"].(map[string]any)
	require.EqualValues(t, 99, attrs["orders"], "the CRM column lives under attributes")
	require.EqualValues(t, 1000, attrs["count_purchase"])
	require.Equal(t, "junk", attrs["ev_state"])
	require.Equal(t, "gold", attrs["tier"])
	require.Equal(t, map[string]int64{"EUR": 2599}, f["lifetime_value"])
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), p.CRM.CreatedAt)
}

func TestStore_CRMWritesAreVersionGuarded(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	ctx := t.Context()
	ok, err := s.ApplyCRM(ctx, "c2", 20, map[string]any{"email": "new@example.com", "first_name": "New", "loyalty": "gold"}, nil)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ApplyCRM(ctx, "c2", 19, map[string]any{"email": "old@example.com"}, nil)
	require.NoError(t, err)
	require.False(t, ok, "an older change is a no-op")
	ok, err = s.ApplyCRM(ctx, "c2", 20, map[string]any{"email": "again@example.com"}, nil)
	require.NoError(t, err)
	require.False(t, ok, "a replay is a no-op")
	// A NULL column goes; a column in neither set nor null (unchanged TOAST) stays.
	ok, err = s.ApplyCRM(ctx, "c2", 21, map[string]any{"email": "new@example.com"}, []string{"first_name"})
	require.NoError(t, err)
	require.True(t, ok)
	p, err := s.Get(ctx, "c2")
	require.NoError(t, err)
	require.Equal(t, "new@example.com", p.CRM.Email)
	require.Empty(t, p.CRM.FirstName)
	require.Equal(t, "gold", p.CRM.Attributes["loyalty"])
	require.Equal(t, uint64(21), p.CRMVersion)

	// Deleting the row removes the CRM part and empties the preference maps for good.
	_, err = s.ApplyEntry(ctx, "c2", profile.Subscriptions, "news", 22, map[string]any{"status": "subscribed", "source": "crm"})
	require.NoError(t, err)
	ok, err = s.DeleteCRM(ctx, "c2", 30, []string{"loyalty"})
	require.NoError(t, err)
	require.True(t, ok)
	p, err = s.Get(ctx, "c2")
	require.NoError(t, err)
	require.Empty(t, p.CRM.Email)
	require.Empty(t, p.CRM.Attributes)
	require.Empty(t, p.Subscriptions)
	require.False(t, p.Reachable())
	ok, err = s.ApplyEntry(ctx, "c2", profile.Subscriptions, "news", 25, map[string]any{"status": "subscribed"})
	require.NoError(t, err)
	require.False(t, ok, "a change older than the erasure cannot bring the subscription back")
}

func TestStore_PreferenceEntriesHaveTheirOwnVersionsAndTombstones(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	ctx := t.Context()
	at := "2026-11-01T10:00:00Z"
	ok, err := s.ApplyEntry(ctx, "c3", profile.Consents, "email_marketing", 5, map[string]any{"granted": true, "source": "webhook", "at": at})
	require.NoError(t, err)
	require.True(t, ok, "the map is created on first use")
	ok, err = s.ApplyEntry(ctx, "c3", profile.Subscriptions, "news", 6, map[string]any{"status": "subscribed", "source": "crm", "updated_at": at})
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ApplyEntry(ctx, "c3", profile.Subscriptions, "deals", 7, map[string]any{"status": "unsubscribed", "source": "one_click"})
	require.NoError(t, err)
	require.True(t, ok)
	p, err := s.Get(ctx, "c3")
	require.NoError(t, err)
	require.True(t, p.Consented("email_marketing"))
	require.True(t, p.Subscribed("news"))
	require.False(t, p.Subscribed("deals"))
	require.Equal(t, profile.Consent{Granted: true, Source: "webhook", At: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), Version: 5}, p.Consents["email_marketing"])

	// Deleting a row leaves a tombstone: absent from the model, and older changes stay out.
	ok, err = s.ApplyEntry(ctx, "c3", profile.Subscriptions, "news", 8, nil)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ApplyEntry(ctx, "c3", profile.Subscriptions, "news", 6, map[string]any{"status": "subscribed"})
	require.NoError(t, err)
	require.False(t, ok)
	p, err = s.Get(ctx, "c3")
	require.NoError(t, err)
	require.NotContains(t, p.Subscriptions, "news")
	require.Contains(t, p.Subscriptions, "deals")

	// TRUNCATE empties a map and raises its floor; it never creates a profile.
	ok, err = s.ClearEntries(ctx, "c3", profile.Subscriptions, 9)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ClearEntries(ctx, "nobody", profile.Subscriptions, 9)
	require.NoError(t, err)
	require.False(t, ok)
	_, err = s.Get(ctx, "nobody")
	require.ErrorIs(t, err, profile.ErrNotFound)
	p, err = s.Get(ctx, "c3")
	require.NoError(t, err)
	require.Empty(t, p.Subscriptions)
	require.True(t, p.Consented("email_marketing"), "the other map is untouched")
}

func TestStore_RefusesWhatCannotFit(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	ctx := t.Context()
	_, err := s.ApplyCRM(ctx, "big", 1, map[string]any{"email": "b@example.com", "attributes": map[string]any{"blob": strings.Repeat("x", profile.MaxCRMBytes+1)}}, nil)
	require.ErrorIs(t, err, profile.ErrWriteRefused)
	require.ErrorContains(t, err, "the limit is 65536")
	_, err = s.ApplyCRM(ctx, "typed", 1, map[string]any{"email": int64(5)}, nil)
	require.ErrorIs(t, err, profile.ErrWriteRefused, "a known column of the wrong type")
	require.ErrorContains(t, err, "column email: want text")
	_, err = s.ApplyEntry(ctx, "typed", profile.Consents, "p", 1, map[string]any{"granted": "yes"})
	require.ErrorIs(t, err, profile.ErrWriteRefused)

	for i := range profile.MaxEntriesPerMap {
		ok, err := s.ApplyEntry(ctx, "many", profile.Subscriptions, fmt.Sprintf("topic-%03d", i), 1, map[string]any{"status": "subscribed"})
		require.NoError(t, err)
		require.True(t, ok)
	}
	_, err = s.ApplyEntry(ctx, "many", profile.Subscriptions, "one-too-many", 2, map[string]any{"status": "subscribed"})
	require.ErrorIs(t, err, profile.ErrWriteRefused)
	require.ErrorContains(t, err, "the limit")
	ok, err := s.ApplyEntry(ctx, "many", profile.Subscriptions, "topic-000", 2, map[string]any{"status": "unsubscribed"})
	require.NoError(t, err)
	require.True(t, ok, "an existing entry can still change in a full map")
}

func TestWriter_DoesNotAggregateIntoAnErasedProfile(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	ctx := t.Context()
	now := time.Now().UTC()
	w := profile.NewWriter(s, profile.WriterConfig{})
	require.NoError(t, w.Apply(ctx, []events.Event{purchase("x1", "gone", now, 100)}))
	_, err := s.ApplyCRM(ctx, "gone", 1, map[string]any{"email": "gone@example.com"}, nil)
	require.NoError(t, err)
	require.NoError(t, s.Erase(ctx, "gone", now))
	// The writer's cache still holds the profile's features: the write must still be refused.
	require.NoError(t, w.Apply(ctx, []events.Event{purchase("x2", "gone", now.Add(time.Second), 100)}))
	require.NoError(t, profile.NewWriter(s, profile.WriterConfig{}).Apply(ctx, []events.Event{purchase("x3", "gone", now.Add(2*time.Second), 100)}))
	p, err := s.Get(ctx, "gone")
	require.NoError(t, err)
	require.True(t, p.Erased())
	require.Empty(t, p.CRM.Email)
	require.Zero(t, p.Behaviour.Orders, "events after the erasure are not aggregated")
	require.False(t, p.Reachable())
}
