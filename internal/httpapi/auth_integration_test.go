package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/apikeys"
	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/events"
)

type keyFunc func(ctx context.Context, key, scope string) error

func (f keyFunc) Check(ctx context.Context, key, scope string) error { return f(ctx, key, scope) }

func TestAnyOf_AcceptsWhatOneAcceptsAndPrefersTheMostSpecificRefusal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	unknown := keyFunc(func(context.Context, string, string) error { return httpapi.ErrUnknownKey })
	noScope := keyFunc(func(context.Context, string, string) error { return httpapi.ErrMissingScope })
	down := keyFunc(func(context.Context, string, string) error { return errors.New("store down") })
	ok := keyFunc(func(context.Context, string, string) error { return nil })

	require.NoError(t, httpapi.AnyOf(unknown, down, ok).Check(ctx, "k", "s"))
	require.ErrorIs(t, httpapi.AnyOf(unknown, down, noScope).Check(ctx, "k", "s"), httpapi.ErrMissingScope)
	require.ErrorContains(t, httpapi.AnyOf(unknown, down).Check(ctx, "k", "s"), "store down")
	require.ErrorIs(t, httpapi.AnyOf(unknown, unknown).Check(ctx, "k", "s"), httpapi.ErrUnknownKey)
	require.ErrorIs(t, httpapi.AnyOf().Check(ctx, "k", "s"), httpapi.ErrUnknownKey)

	// The first checker that accepts ends the search: a down store behind a static key is
	// never asked.
	asked := false
	spy := keyFunc(func(context.Context, string, string) error { asked = true; return nil })
	require.NoError(t, httpapi.AnyOf(ok, spy).Check(ctx, "k", "s"))
	require.False(t, asked)
}

// POST /v1/events behind the keys tailor serve uses: the bootstrap key and the keys in
// Postgres, with their scopes and revocations.
func TestRequireScope_DatabaseKeysEndToEnd(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 1)
	ctx := t.Context()
	var ahead atomic.Int64 // how far the checker's clock is ahead of time.Now
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	dbKeys, err := apikeys.NewChecker(apikeys.CheckerConfig{DB: e.Pool, Now: now})
	require.NoError(t, err)
	static, err := httpapi.NewStaticKeys([]string{httpapi.HashKey(testAPIKey)})
	require.NoError(t, err)
	h, err := httpapi.NewEventsHandler(httpapi.EventsConfig{Ingestor: &events.Ingestor{Stream: e.Producer, DeadLetters: e.DeadLetters}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", httpapi.RequireScope(httpapi.AnyOf(static, dbKeys), httpapi.ScopeEvents, h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	store := apikeys.NewStore(e.Pool)
	ingest, err := store.Create(ctx, "ingest", []string{"events"})
	require.NoError(t, err)
	relay, err := store.Create(ctx, "relay", []string{"send"})
	require.NoError(t, err)
	event := []byte(`{"event_id":"e1","customer_id":"c1","type":"search","timestamp":"` +
		time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","properties":{"query":"q"}}`)

	code, res := post(t, srv, ingest.Secret, event)
	require.Equal(t, http.StatusOK, code, res.Error)
	require.Equal(t, 1, res.Accepted)
	code, _ = post(t, srv, testAPIKey, event)
	require.Equal(t, http.StatusOK, code, "the bootstrap key keeps every scope")

	code, res = post(t, srv, relay.Secret, event)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, `this API key lacks the "events" scope`, res.Error)

	code, res = post(t, srv, "tlr_"+ingest.Secret[4:10], event)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, res.Error, "unknown or revoked API key")
	code, _ = post(t, srv, "", event)
	require.Equal(t, http.StatusUnauthorized, code)

	_, err = store.Revoke(ctx, "ingest")
	require.NoError(t, err)
	ahead.Add(int64(apikeys.MaxAgeDefault))
	code, res = post(t, srv, ingest.Secret, event)
	require.Equal(t, http.StatusUnauthorized, code, "revoked: refused once the cache is MaxAge old")
	require.Contains(t, res.Error, "revoked")
}
