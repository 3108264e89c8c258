package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	env   *testenv.Env
	store *profile.Store
	cfg   cdc.Config
}

func setup(t testing.TB) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack")
	}
	env := testenv.New(t)
	store := profile.NewStore(env.DynamoDB, env.Names.Profiles)
	require.NoError(t, store.EnsureTable(context.Background()))
	return &fixture{env: env, store: store, cfg: cdc.Config{
		DatabaseURL: env.DatabaseURL, Slot: env.Names.Slot, Publication: env.Names.Publication,
		StandbyTimeout: time.Second, LockPoll: 100 * time.Millisecond, RetryDelay: 100 * time.Millisecond,
		Logger: testLogger(t),
	}}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("CDC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a CDC process until the test ends (or stop is called) and waits for it to return.
func (f *fixture) start(t testing.TB, cfg cdc.Config) (c *cdc.CDC, stop func()) {
	t.Helper()
	c, err := cdc.New(cfg, f.store)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("cdc did not stop within 30s of cancel")
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := f.env.Pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

// eventually polls cond with backoff until it returns nil or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// view is what the tests read of a profile: the read view (Fields) with absent CRM fields left
// out, the preference maps with each entry's version, and the CRM version.
type view map[string]any

func viewOf(p *profile.Profile) view {
	v := view(p.Fields(time.Now()))
	for _, k := range []string{"email", "first_name", "last_name", "locale", "timezone", "country"} {
		if v[k] == "" {
			delete(v, k)
		}
	}
	for _, k := range []string{"created_at", "crm_updated_at"} {
		if v[k].(time.Time).IsZero() {
			delete(v, k)
		}
	}
	if len(p.CRM.Attributes) == 0 {
		delete(v, "attributes")
	}
	subs, cons := map[string]any{}, map[string]any{}
	for k, s := range p.Subscriptions {
		subs[k] = map[string]any{"status": s.Status, "source": s.Source, "lsn": float64(s.Version)}
	}
	for k, c := range p.Consents {
		cons[k] = map[string]any{"granted": c.Granted, "source": c.Source, "lsn": float64(c.Version)}
	}
	v["subscriptions"], v["consents"] = subs, cons
	v["crm_lsn"] = float64(p.CRMVersion)
	return v
}

func (f *fixture) profile(id string) (view, error) {
	p, err := f.store.Get(context.Background(), id)
	if err != nil {
		return nil, err
	}
	return viewOf(p), nil
}

// waitField waits until the profile of id has field == want.
func (f *fixture) waitField(t *testing.T, id, field string, want any) view {
	t.Helper()
	var p view
	eventually(t, 30*time.Second, func() error {
		var err error
		p, err = f.profile(id)
		if err != nil {
			return err
		}
		if got := p[field]; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("profile %s: %s = %v, want %v", id, field, got, want)
		}
		return nil
	})
	return p
}

func crmLSN(t *testing.T, p view) uint64 {
	t.Helper()
	v, ok := p["crm_lsn"].(float64)
	require.True(t, ok, "profile has no crm_lsn: %v", p)
	return uint64(v)
}

func TestCDC_StreamsInsertsAndUpdatesIntoProfiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)

	f.exec(t, `INSERT INTO customers (id, email, first_name, last_name, locale, timezone, country, attributes)
		VALUES ('c1', 'ada@example.com', 'Ada', 'Lovelace', 'en-GB', 'Europe/London', 'GB', '{"plan":"pro","seats":3}')`)
	p := f.waitField(t, "c1", "email", "ada@example.com")
	require.Equal(t, "Ada", p["first_name"])
	require.Equal(t, "Lovelace", p["last_name"])
	require.Equal(t, "GB", p["country"])
	require.Equal(t, map[string]any{"plan": "pro", "seats": float64(3)}, p["attributes"])
	require.Contains(t, p, "crm_updated_at", "customers.updated_at lands under a prefixed name")
	require.Contains(t, p, "created_at")

	f.exec(t, `UPDATE customers SET first_name = 'Augusta', email = 'augusta@example.com', country = NULL WHERE id = 'c1'`)
	p = f.waitField(t, "c1", "first_name", "Augusta")
	require.Equal(t, "augusta@example.com", p["email"])
	require.NotContains(t, p, "country", "a NULL column removes the attribute")
}

func TestCDC_ReplayOfOlderLSNDoesNotOverwrite(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email, first_name) VALUES ('c1', 'a@example.com', 'First')`)
	p := f.waitField(t, "c1", "first_name", "First")
	first := crmLSN(t, p)
	f.exec(t, `UPDATE customers SET first_name = 'Second' WHERE id = 'c1'`)
	p = f.waitField(t, "c1", "first_name", "Second")
	second := crmLSN(t, p)
	require.Greater(t, second, first)

	// A redelivered older change (what a replay after a crash looks like) is a no-op.
	ok, err := f.store.ApplyCRM(context.Background(), "c1", first, map[string]any{"first_name": "First"}, nil)
	require.NoError(t, err)
	require.False(t, ok)
	ok, err = f.store.ApplyCRM(context.Background(), "c1", second, map[string]any{"first_name": "Again"}, nil)
	require.NoError(t, err)
	require.False(t, ok, "the same version again is a no-op too")
	p, err = f.profile("c1")
	require.NoError(t, err)
	require.Equal(t, "Second", p["first_name"])
}

// slotConfirmed returns the slot's confirmed_flush_lsn.
func (f *fixture) slotConfirmed(t *testing.T) (string, bool) {
	t.Helper()
	var lsn *string // NULL while the slot is being created
	err := f.env.Pool.QueryRow(context.Background(),
		`SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && lsn == nil) {
		return "", false
	}
	require.NoError(t, err)
	return *lsn, true
}

func parseLSN(t *testing.T, s string) uint64 {
	t.Helper()
	var hi, lo uint64
	_, err := fmt.Sscanf(s, "%X/%X", &hi, &lo)
	require.NoError(t, err, s)
	return hi<<32 | lo
}

func lsnString(v uint64) string { return fmt.Sprintf("%X/%X", v>>32, uint32(v)) }

// TestCDC_RunLeavesNoGoroutinesBehind is not parallel: parallel tests wait until it is done,
// so every goroutine running cdc code belongs to it.
func TestCDC_RunLeavesNoGoroutinesBehind(t *testing.T) {
	f := setup(t)
	c, stop := f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('g1', 'g1@example.com')`)
	f.waitField(t, "g1", "email", "g1@example.com")
	require.NotEmpty(t, cdcGoroutines(), "the check sees a running process")
	standby, stopStandby := f.start(t, f.cfg)
	require.False(t, standby.Active())
	stopStandby()
	stop()
	require.False(t, c.Active())
	eventually(t, 10*time.Second, func() error {
		if g := cdcGoroutines(); len(g) > 0 {
			return fmt.Errorf("%d goroutines still in cdc code:\n%s", len(g), g[0])
		}
		return nil
	})
}

// cdcGoroutines returns the stacks of goroutines running code of package cdc (not its tests).
func cdcGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "tailor/pipeline/cdc.(*") {
			out = append(out, g)
		}
	}
	return out
}
