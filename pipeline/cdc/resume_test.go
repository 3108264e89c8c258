package cdc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/localstack"
	"github.com/tailor-email/tailor/migrations"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// workload writes n mixed changes (upserts, partial updates and deletes of customers,
// subscriptions and consents, several per transaction, rows touched twice in one transaction)
// over a small set of customers, so that most rows see many versions.
func workload(ctx context.Context, pool *pgxpool.Pool, seed uint64, n, customers int) error {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	topics := []string{"news", "promo", "product"}
	purposes := []string{"marketing", "profiling"}
	for done := 0; done < n; {
		b := &pgx.Batch{}
		size := 1 + rng.IntN(20)
		for range size {
			id := "w" + strconv.Itoa(rng.IntN(customers))
			switch r := rng.IntN(100); {
			case r < 30:
				b.Queue(`INSERT INTO customers (id, email, first_name, last_name, attributes) VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name,
					last_name = EXCLUDED.last_name, attributes = EXCLUDED.attributes, updated_at = now()`,
					id, fmt.Sprintf("%s.%d@example.com", id, done), "F"+strconv.Itoa(done), nullable(rng, "L"+strconv.Itoa(done)),
					map[string]any{"n": done, "tags": []string{"a", strconv.Itoa(rng.IntN(9))}})
			case r < 50:
				b.Queue(`UPDATE customers SET first_name = $2 WHERE id = $1`, id, "U"+strconv.Itoa(done))
			case r < 55:
				b.Queue(`DELETE FROM customers WHERE id = $1`, id)
			case r < 75:
				b.Queue(`INSERT INTO subscriptions (customer_id, topic, status, source) SELECT $1, $2, $3, 'load' WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1)
					ON CONFLICT (customer_id, topic) DO UPDATE SET status = EXCLUDED.status, updated_at = now()`,
					id, topics[rng.IntN(len(topics))], []string{"subscribed", "unsubscribed", "pending"}[rng.IntN(3)])
			case r < 80:
				b.Queue(`DELETE FROM subscriptions WHERE customer_id = $1 AND topic = $2`, id, topics[rng.IntN(len(topics))])
			case r < 95:
				b.Queue(`INSERT INTO consents (customer_id, purpose, granted) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1)
					ON CONFLICT (customer_id, purpose) DO UPDATE SET granted = EXCLUDED.granted, at = now()`,
					id, purposes[rng.IntN(len(purposes))], rng.IntN(2) == 0)
			default:
				b.Queue(`DELETE FROM consents WHERE customer_id = $1 AND purpose = $2`, id, purposes[rng.IntN(len(purposes))])
			}
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
		if err != nil {
			return fmt.Errorf("workload: %w", err)
		}
		done += size
	}
	return nil
}

func nullable(rng *rand.Rand, s string) any {
	if rng.IntN(4) == 0 {
		return nil
	}
	return s
}

// crmView is the part of a profile CDC owns, in a comparable shape.
type crmView struct {
	Email, FirstName, LastName string
	Attributes                 string
	Subscriptions, Consents    map[string]string
}

// expectedViews reads what Postgres holds.
func expectedViews(ctx context.Context, pool *pgxpool.Pool) (map[string]crmView, error) {
	out := map[string]crmView{}
	rows, err := pool.Query(ctx, `SELECT id, email, COALESCE(first_name, ''), COALESCE(last_name, ''), attributes FROM customers`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var v crmView
		var attrs map[string]any
		if err := rows.Scan(&id, &v.Email, &v.FirstName, &v.LastName, &attrs); err != nil {
			return nil, err
		}
		v.Attributes = canonical(attrs)
		v.Subscriptions, v.Consents = map[string]string{}, map[string]string{}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, q := range []string{`SELECT customer_id, topic, status FROM subscriptions`, `SELECT customer_id, purpose, granted::text FROM consents`} {
		rows, err := pool.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, k, val string
			if err := rows.Scan(&id, &k, &val); err != nil {
				return nil, err
			}
			if strings.Contains(q, "subscriptions") {
				out[id].Subscriptions[k] = val
			} else {
				out[id].Consents[k] = val
			}
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func canonical(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys; numbers as float64 on both sides
	var x any
	_ = json.Unmarshal(b, &x)
	b, _ = json.Marshal(x)
	return string(b)
}

// profileViews reads what the profiles hold; profiles without CRM data are left out.
func profileViews(ctx context.Context, store *profile.Store) (map[string]crmView, error) {
	var mu sync.Mutex
	out := map[string]crmView{}
	err := store.Scan(ctx, 4, func(p *profile.Profile) error {
		v := crmView{Subscriptions: map[string]string{}, Consents: map[string]string{}}
		v.Email, v.FirstName, v.LastName = p.CRM.Email, p.CRM.FirstName, p.CRM.LastName
		if p.CRM.Email != "" { // a customers row: its attributes, {} when empty
			v.Attributes = canonical(p.CRM.Attributes)
		}
		for k, s := range p.Subscriptions {
			v.Subscriptions[k] = s.Status
		}
		for k, c := range p.Consents {
			v.Consents[k] = fmt.Sprint(c.Granted)
		}
		if v.Email == "" && len(v.Subscriptions) == 0 && len(v.Consents) == 0 && v.FirstName == "" {
			return nil
		}
		mu.Lock()
		out[p.ID] = v
		mu.Unlock()
		return nil
	})
	return out, err
}

// requireProfilesMatch waits until every profile equals its Postgres rows exactly.
func requireProfilesMatch(t *testing.T, pool *pgxpool.Pool, store *profile.Store, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	want, err := expectedViews(ctx, pool)
	require.NoError(t, err)
	require.NotEmpty(t, want)
	eventually(t, timeout, func() error {
		got, err := profileViews(ctx, store)
		if err != nil {
			return err
		}
		return diffViews(want, got)
	})
}

func diffViews(want, got map[string]crmView) error {
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var diffs []string
	for _, id := range ids {
		w, g := want[id], got[id]
		if w.Subscriptions == nil {
			w.Subscriptions, w.Consents = map[string]string{}, map[string]string{}
		}
		if g.Subscriptions == nil {
			g.Subscriptions, g.Consents = map[string]string{}, map[string]string{}
		}
		if !reflect.DeepEqual(w, g) {
			diffs = append(diffs, fmt.Sprintf("%s: want %+v, got %+v", id, w, g))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%d profiles differ, first: %s", len(diffs), diffs[0])
	}
	return nil
}

func TestCDC_SecondProcessWaitsAsStandbyAndTakesOver(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a, stopA := f.start(t, f.cfg)
	eventually(t, 30*time.Second, func() error {
		if !a.Active() {
			return fmt.Errorf("first process not active")
		}
		return nil
	})
	b, _ := f.start(t, f.cfg)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('h1', 'h1@example.com')`)
	f.waitField(t, "h1", "email", "h1@example.com")
	require.True(t, a.Active())
	require.False(t, b.Active(), "the second process is a standby")
	require.Zero(t, b.Applied())

	stopA()
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('h2', 'h2@example.com')`)
	f.waitField(t, "h2", "email", "h2@example.com")
	require.True(t, b.Active())
	eventually(t, 10*time.Second, func() error { // the counter moves right after the write
		if b.Applied() == 0 {
			return fmt.Errorf("standby applied nothing")
		}
		return nil
	})
}

func TestCDC_ResumesWithoutLossAfterCancelMidStream(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email) SELECT 'w' || g, 'seed@example.com' FROM generate_series(0, 99) g`)
	done := make(chan error, 1)
	go func() { done <- workload(ctx, f.env.Pool, 1, 20_000, 400) }()

	for round := range 3 {
		c, stop := f.start(t, f.cfg)
		eventually(t, 60*time.Second, func() error {
			if c.Applied() < 1500 {
				return fmt.Errorf("round %d: %d applied", round, c.Applied())
			}
			return nil
		})
		stop() // mid-stream: some changes applied but not acknowledged yet
	}
	f.start(t, f.cfg)
	require.NoError(t, <-done)
	requireProfilesMatch(t, f.env.Pool, f.store, 2*time.Minute)
}

// helperConfig is what a child process needs to run CDC.
type helperConfig struct {
	DatabaseURL, Slot, Publication, Table, StackDir string
	BatchSize                                       int // default when 0
	BlockAfter                                      int // when > 0: the store hangs after this many writes
}

// TestCDC_HelperProcess is not a test: it is the CDC process that the kill test starts (and
// SIGKILLs) as a child.
func TestCDC_HelperProcess(t *testing.T) {
	raw := os.Getenv("CDC_HELPER_CONFIG")
	if raw == "" {
		t.Skip("helper process for TestCDC_ResumesWithoutLossAfterProcessKill")
	}
	var hc helperConfig
	require.NoError(t, json.Unmarshal([]byte(raw), &hc))
	ctx := context.Background()
	b, err := backends.Open(ctx, backends.Config{DatabaseURL: hc.DatabaseURL, StackDir: hc.StackDir})
	require.NoError(t, err)
	defer b.Close()
	var store cdc.Store = profile.NewStore(b.DynamoDB, hc.Table)
	if hc.BlockAfter > 0 {
		store = &blockingStore{Store: profile.NewStore(b.DynamoDB, hc.Table), after: int64(hc.BlockAfter)}
	}
	c, err := cdc.New(cdc.Config{DatabaseURL: hc.DatabaseURL, Slot: hc.Slot, Publication: hc.Publication,
		StandbyTimeout: time.Second, LockPoll: 100 * time.Millisecond, RetryDelay: 100 * time.Millisecond,
		BatchSize: hc.BatchSize, Logger: testLogger(t),
	}, store)
	require.NoError(t, err)
	require.NoError(t, c.Run(ctx)) // until killed
}

func (f *fixture) startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	hc, err := json.Marshal(helperConfig{DatabaseURL: f.cfg.DatabaseURL, Slot: f.cfg.Slot, Publication: f.cfg.Publication,
		Table: f.store.Table(), StackDir: testenv.Stack(t).Dir})
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCDC_HelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CDC_HELPER_CONFIG="+string(hc), "TAILOR_TEST_DIR="+testenv.Stack(t).Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestCDC_ResumesWithoutLossAfterProcessKill(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email) SELECT 'w' || g, 'seed@example.com' FROM generate_series(0, 99) g`)
	done := make(chan error, 1)
	go func() { done <- workload(ctx, f.env.Pool, 2, 20_000, 400) }()

	var last uint64
	for round := range 2 {
		child := f.startChild(t)
		// Wait until the child has made progress (the slot moved twice), then kill -9 it.
		for range 2 {
			eventually(t, 60*time.Second, func() error {
				lsn, ok := f.slotConfirmed(t)
				if !ok || parseLSN(t, lsn) <= last {
					return fmt.Errorf("round %d: slot at %s", round, lsn)
				}
				last = parseLSN(t, lsn)
				return nil
			})
		}
		require.NoError(t, child.Process.Signal(syscall.SIGKILL))
		_ = child.Wait()
	}
	f.startChild(t)
	require.NoError(t, <-done)
	requireProfilesMatch(t, f.env.Pool, f.store, 2*time.Minute)
}

// TestCDC_ResumesWithoutLossAfterPostgresRestart restarts Postgres (immediate shutdown: the
// slot's position falls back to the last checkpoint) mid-stream. It runs its own stack, so the
// restart does not disturb other tests.
func TestCDC_ResumesWithoutLossAfterPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own local stack")
	}
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	stack, err := localstack.Start(ctx, localstack.Config{Dir: dir})
	require.NoError(t, err)
	st := stack.State()
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = stack.Stop(stopCtx)
	})
	pgCtl := func(args ...string) error {
		return runPgCtl(st, args...)
	}
	t.Cleanup(func() { _ = pgCtl("stop", "-m", "fast", "-w") }) // the restarted postmaster is not the stack's child

	b, err := backends.Open(ctx, backends.Config{StackDir: dir, Prefix: "restart_"})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	_, err = migrations.Up(ctx, b.Pool)
	require.NoError(t, err)
	store := profile.NewStore(b.DynamoDB, b.Names.Profiles)
	require.NoError(t, store.EnsureTable(ctx))
	f := &fixture{store: store, cfg: cdc.Config{DatabaseURL: b.DatabaseURL, Slot: b.Names.Slot, Publication: b.Names.Publication,
		StandbyTimeout: time.Second, LockPoll: 100 * time.Millisecond, RetryDelay: 100 * time.Millisecond, Logger: testLogger(t)}}
	_, err = b.Pool.Exec(ctx, `INSERT INTO customers (id, email) SELECT 'w' || g, 'seed@example.com' FROM generate_series(0, 99) g`)
	require.NoError(t, err)

	c, _ := f.start(t, f.cfg)
	// The workload survives the restart by retrying its transactions.
	done := make(chan error, 1)
	go func() {
		const total, step = 20_000, 500
		for i := 0; i < total; i += step {
			var err error
			for attempt := 0; attempt < 100; attempt++ {
				if err = workload(ctx, b.Pool, uint64(1000+i), step, 400); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	eventually(t, 60*time.Second, func() error {
		if c.Applied() < 3000 {
			return fmt.Errorf("%d applied", c.Applied())
		}
		return nil
	})
	require.NoError(t, pgCtl("restart", "-m", "immediate", "-w", "-t", "60", "-l", filepath.Join(st.Postgres.Home, "restart.log")))
	before := c.Applied()
	require.NoError(t, <-done)
	requireProfilesMatch(t, b.Pool, store, 3*time.Minute)
	require.Greater(t, c.Applied(), before, "the same process reconnected and went on")
}

// runPgCtl runs pg_ctl on the stack's cluster as the cluster's OS user.
func runPgCtl(st *localstack.State, args ...string) error {
	bin := os.Getenv("TAILOR_PG_BINDIR")
	if bin == "" {
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			bin = strings.TrimSpace(string(out))
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_ctl")); bin == "" || err != nil {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		if len(dirs) == 0 {
			return fmt.Errorf("pg_ctl not found")
		}
		bin = dirs[0]
	}
	cmd := exec.Command(filepath.Join(bin, "pg_ctl"), append([]string{"-D", filepath.Join(st.Postgres.Home, "data")}, args...)...)
	cmd.Dir = st.Postgres.Home
	if os.Geteuid() == 0 {
		u, err := user.Lookup(st.Postgres.OSUser)
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %w: %s", args, err, out)
	}
	return nil
}

func TestCDC_StopsStreamingWhenItsLockSessionDies(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.cfg.StandbyTimeout = 200 * time.Millisecond
	f.start(t, f.cfg)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('k1', 'k1@example.com')`)
	f.waitField(t, "k1", "email", "k1@example.com")
	var walsender int
	eventually(t, 30*time.Second, func() error { // the row may have come through the backfill
		var pid *int
		err := f.env.Pool.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&pid)
		if err == nil && pid == nil {
			err = fmt.Errorf("not streaming yet")
		}
		if err == nil {
			walsender = *pid
		}
		return err
	})

	// Without its lock session a process could stream beside a standby that took the lock over:
	// it must give up the slot and start again (taking the lock again, as nobody else has it).
	var killed bool
	require.NoError(t, f.env.Pool.QueryRow(ctx, `SELECT bool_or(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed))
	require.True(t, killed)
	eventually(t, 30*time.Second, func() error {
		var pid *int
		if err := f.env.Pool.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&pid); err != nil {
			return err
		}
		if pid == nil || *pid == walsender {
			return fmt.Errorf("still the old walsender (%d) or none", walsender)
		}
		return nil
	})
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('k2', 'k2@example.com')`)
	f.waitField(t, "k2", "email", "k2@example.com")
}
