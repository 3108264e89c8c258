package apikeys_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/apikeys"
	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a settable clock for Checker tests: the cache expires when the test says so.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []string
		want []string
		err  string
	}{
		{in: []string{"send,events"}, want: []string{"events", "send"}},
		{in: []string{"admin", " Send ", "send"}, want: []string{"send", "admin"}},
		{in: []string{"events,send,webhooks,admin"}, want: apikeys.Scopes},
		{in: []string{"evnts"}, err: `unknown scope "evnts" (did you mean "events"?)`},
		{in: []string{"root"}, err: `unknown scope "root"; the scopes are events, send, webhooks, admin`},
		{in: []string{""}, err: "name at least one scope"},
		{in: nil, err: "name at least one scope"},
	} {
		got, err := apikeys.ParseScopes(tc.in)
		if tc.err != "" {
			require.ErrorIs(t, err, apikeys.ErrInvalid, "%q", tc.in)
			require.ErrorContains(t, err, tc.err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestNewKey_IsPrefixedAndRandom(t *testing.T) {
	t.Parallel()
	a, err := apikeys.NewKey()
	require.NoError(t, err)
	b, err := apikeys.NewKey()
	require.NoError(t, err)
	require.Regexp(t, `^tlr_[a-z2-7]{39}$`, a)
	require.NotEqual(t, a, b)
}

func TestStore_CreateListRevoke(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	store := apikeys.NewStore(env.Pool)

	k, err := store.Create(ctx, "relay-1", []string{"send,events"})
	require.NoError(t, err)
	require.Regexp(t, `^tlr_[a-z2-7]{39}$`, k.Secret)
	require.Equal(t, k.Secret[:8], k.Prefix)
	require.Equal(t, []string{"events", "send"}, k.Scopes)
	require.Positive(t, k.ID)

	// Only the hash is stored.
	var hash []byte
	require.NoError(t, env.Pool.QueryRow(ctx, "SELECT key_hash FROM api_keys WHERE id = $1", k.ID).Scan(&hash))
	sum := sha256.Sum256([]byte(k.Secret))
	require.Equal(t, sum[:], hash)
	var leaked bool
	require.NoError(t, env.Pool.QueryRow(ctx, "SELECT position($1 in api_keys::text) > 0 FROM api_keys WHERE id = $2", k.Secret, k.ID).Scan(&leaked))
	require.False(t, leaked, "the secret is nowhere in the row")

	_, err = store.Create(ctx, "relay-1", []string{"send"})
	require.ErrorIs(t, err, apikeys.ErrNameTaken)
	_, err = store.Create(ctx, "1relay", []string{"send"})
	require.ErrorIs(t, err, apikeys.ErrInvalid)
	require.ErrorContains(t, err, "start with a letter")
	_, err = store.Create(ctx, "ok", []string{"sned"})
	require.ErrorContains(t, err, `did you mean "send"?`)

	ingest, err := store.Create(ctx, "ingest", []string{"events"})
	require.NoError(t, err)

	// Revoke by name, then by id; an unknown or revoked key is ErrNotFound.
	got, err := store.Revoke(ctx, "relay-1")
	require.NoError(t, err)
	require.Equal(t, k.ID, got.ID)
	require.NotNil(t, got.RevokedAt)
	_, err = store.Revoke(ctx, "relay-1")
	require.ErrorIs(t, err, apikeys.ErrNotFound)
	_, err = store.Revoke(ctx, strconv.FormatInt(k.ID, 10))
	require.ErrorIs(t, err, apikeys.ErrNotFound, "already revoked")
	_, err = store.Revoke(ctx, "nobody")
	require.ErrorIs(t, err, apikeys.ErrNotFound)

	// A revoked key's name may be used again.
	again, err := store.Create(ctx, "relay-1", []string{"send"})
	require.NoError(t, err)
	got, err = store.Revoke(ctx, strconv.FormatInt(ingest.ID, 10))
	require.NoError(t, err)
	require.Equal(t, "ingest", got.Name)

	keys, err := store.List(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 3)
	require.Equal(t, again.ID, keys[0].ID, "active keys first")
	require.Nil(t, keys[0].RevokedAt)
	require.Equal(t, []int64{k.ID, ingest.ID}, []int64{keys[1].ID, keys[2].ID}, "then revoked ones, oldest first")
	require.NotNil(t, keys[1].RevokedAt)
	require.Equal(t, "relay-1", keys[1].Name)
}

type checkerEnv struct {
	store   *apikeys.Store
	checker *apikeys.Checker
	clock   *clock
	env     *testenv.Env
}

func setupChecker(t *testing.T) checkerEnv {
	t.Helper()
	env := testenv.New(t)
	clk := newClock()
	c, err := apikeys.NewChecker(apikeys.CheckerConfig{DB: env.Pool, Now: clk.Now})
	require.NoError(t, err)
	return checkerEnv{store: apikeys.NewStore(env.Pool), checker: c, clock: clk, env: env}
}

func TestChecker_RevocationTakesEffectWithinMaxAge(t *testing.T) {
	t.Parallel()
	e := setupChecker(t)
	ctx := t.Context()
	k, err := e.store.Create(ctx, "relay", []string{"send"})
	require.NoError(t, err)
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeSend))

	_, err = e.store.Revoke(ctx, "relay")
	require.NoError(t, err)
	// Within MaxAge the cached copy may still accept it; once MaxAge has passed it never does.
	e.clock.Advance(apikeys.MaxAgeDefault - time.Millisecond)
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeSend), "the copy is younger than MaxAge")
	e.clock.Advance(time.Millisecond)
	require.ErrorIs(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeSend), httpapi.ErrUnknownKey)
	require.Less(t, apikeys.MaxAgeDefault, 5*time.Second, "the issue's promise")
}

func TestChecker_ScopesAndUnknownKeys(t *testing.T) {
	t.Parallel()
	e := setupChecker(t)
	ctx := t.Context()
	k, err := e.store.Create(ctx, "ingest", []string{"events"})
	require.NoError(t, err)
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeEvents))
	err = e.checker.Check(ctx, k.Secret, httpapi.ScopeSend)
	require.ErrorIs(t, err, httpapi.ErrMissingScope)
	require.NotErrorIs(t, err, httpapi.ErrUnknownKey)
	require.ErrorIs(t, e.checker.Check(ctx, "", httpapi.ScopeEvents), httpapi.ErrUnknownKey)
	require.ErrorIs(t, e.checker.Check(ctx, k.Secret+"x", httpapi.ScopeEvents), httpapi.ErrUnknownKey)
	require.ErrorIs(t, e.checker.Check(ctx, k.Prefix, httpapi.ScopeEvents), httpapi.ErrUnknownKey)
}

func TestChecker_NewKeyWorksAfterMissReloadWithoutWaitingForMaxAge(t *testing.T) {
	t.Parallel()
	e := setupChecker(t)
	ctx := t.Context()
	require.ErrorIs(t, e.checker.Check(ctx, "tlr_nothing", httpapi.ScopeSend), httpapi.ErrUnknownKey, "first load")
	k, err := e.store.Create(ctx, "late", []string{"send"})
	require.NoError(t, err)
	// A flood of unknown keys reloads at most once per MissReload: right after a load, a new
	// key is not seen yet...
	require.ErrorIs(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeSend), httpapi.ErrUnknownKey)
	// ...and is seen once MissReload has passed, long before MaxAge.
	e.clock.Advance(apikeys.MissReloadDefault)
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeSend))
}

func TestChecker_RecordsLastUseAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	e := setupChecker(t)
	ctx := t.Context()
	k, err := e.store.Create(ctx, "used", []string{"events"})
	require.NoError(t, err)
	unused, err := e.store.Create(ctx, "unused", []string{"events"})
	require.NoError(t, err)
	lastUsed := func(id int64) *time.Time {
		var at *time.Time
		require.NoError(t, e.env.Pool.QueryRow(ctx, "SELECT last_used_at FROM api_keys WHERE id = $1", id).Scan(&at))
		return at
	}
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeEvents))
	first := lastUsed(k.ID)
	require.NotNil(t, first)
	require.Nil(t, lastUsed(unused.ID))

	_, err = e.env.Pool.Exec(ctx, "UPDATE api_keys SET last_used_at = NULL WHERE id = $1", k.ID)
	require.NoError(t, err)
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeEvents))
	require.Nil(t, lastUsed(k.ID), "not written again within LastUsedEvery")
	e.clock.Advance(apikeys.LastUsedEveryDefault)
	require.NoError(t, e.checker.Check(ctx, k.Secret, httpapi.ScopeEvents))
	require.NotNil(t, lastUsed(k.ID))
}

// failingDB stands for an unreachable Postgres.
type failingDB struct{ apikeys.DB }

func (failingDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("connection refused")
}

func (failingDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errors.New("connection refused")
}

func TestChecker_AnUnreadableStoreIsNeitherUnknownNorAccepted(t *testing.T) {
	t.Parallel()
	c, err := apikeys.NewChecker(apikeys.CheckerConfig{DB: failingDB{}})
	require.NoError(t, err)
	err = c.Check(t.Context(), "tlr_whatever", httpapi.ScopeEvents)
	require.ErrorContains(t, err, "connection refused")
	require.NotErrorIs(t, err, httpapi.ErrUnknownKey)
	require.NotErrorIs(t, err, httpapi.ErrMissingScope)

	_, err = apikeys.NewChecker(apikeys.CheckerConfig{DB: failingDB{}, MaxAge: time.Minute})
	require.ErrorContains(t, err, "want at most 5s")
	_, err = apikeys.NewChecker(apikeys.CheckerConfig{})
	require.ErrorContains(t, err, "DB is required")
}
