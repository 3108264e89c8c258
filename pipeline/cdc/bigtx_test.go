package cdc_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// bigTransaction runs one transaction over n customers b1 ... bn that changes each of them in
// several segments: it inserts them with ~2 KB of attributes, subscribes every one, then
// updates b1 a second time, deletes and re-inserts b2, deletes b3 and unsubscribes b4. It
// returns the WAL position after the commit.
func bigTransaction(ctx context.Context, pool *pgxpool.Pool, n int) (uint64, error) {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO customers (id, email, first_name, attributes)
			SELECT 'b' || g, 'b' || g || '@example.com', 'first', (SELECT jsonb_object_agg('k' || i, md5(g || '.' || i)) FROM generate_series(1, 40) i)
			FROM generate_series(1, $1::int) g`, n)
		b.Queue(`INSERT INTO subscriptions (customer_id, topic, status) SELECT 'b' || g, 'news', 'subscribed' FROM generate_series(1, $1::int) g`, n)
		b.Queue(`UPDATE customers SET first_name = 'second' WHERE id = 'b1'`)
		b.Queue(`DELETE FROM customers WHERE id = 'b2'`)
		b.Queue(`INSERT INTO customers (id, email) VALUES ('b2', 'again@example.com')`)
		b.Queue(`DELETE FROM customers WHERE id = 'b3'`)
		b.Queue(`UPDATE subscriptions SET status = 'unsubscribed' WHERE customer_id = 'b4'`)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, err
	}
	var after pglogrepl.LSN
	err = pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&after)
	return uint64(after), err
}

// waitSlotPast waits until the slot's confirmed position reaches lsn: everything before it is
// in DynamoDB. It is cheap to poll, unlike comparing every profile.
func (f *fixture) waitSlotPast(t *testing.T, lsn uint64) {
	t.Helper()
	eventually(t, 5*time.Minute, func() error {
		at, ok := f.slotConfirmed(t)
		if !ok || parseLSN(t, at) < lsn {
			return fmt.Errorf("slot at %s, want %s", at, lsnString(lsn))
		}
		return nil
	})
}

// startSmallBatches runs CDC with batches of 100 row changes and waits until it streams.
func (f *fixture) startSmallBatches(t *testing.T) *cdc.CDC {
	t.Helper()
	f.cfg.BatchSize = 100
	c, _ := f.start(t, f.cfg)
	eventually(t, 30*time.Second, func() error {
		if c.Confirmed() == 0 {
			return errors.New("not streaming yet")
		}
		return nil
	})
	return c
}

func TestCDC_AppliesABigTransactionInBoundedSegments(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := f.startSmallBatches(t)
	const n = 5000 // 10 000 changes: 10 segments
	after, err := bigTransaction(context.Background(), f.env.Pool, n)
	require.NoError(t, err)

	f.waitSlotPast(t, after)
	requireProfilesMatch(t, f.env.Pool, f.store, time.Minute)
	p, err := f.profile("b1")
	require.NoError(t, err)
	require.Equal(t, "second", p["first_name"], "the second update of b1, segments after its insert, wins")
	p, err = f.profile("b2")
	require.NoError(t, err)
	require.Equal(t, "again@example.com", p["email"])
	p, err = f.profile("b3")
	require.NoError(t, err)
	require.NotContains(t, p, "email", "b3 was erased after its insert")
	p, err = f.profile("b4")
	require.NoError(t, err)
	require.Equal(t, "unsubscribed", path(p, "subscriptions.news.status"))
	require.LessOrEqual(t, c.PeakBuffered(), int64(2*cdc.SegmentChanges),
		"the transaction's %d changes were never all held in memory", 2*n)
}

// blockingStore is a profile store that hangs, as a stalled DynamoDB would, once it has taken
// `after` writes, and then says "blocked" on stdout.
type blockingStore struct {
	*profile.Store
	after   int64
	writes  atomic.Int64
	blocked sync.Once
}

func (s *blockingStore) block(ctx context.Context) error {
	if s.writes.Add(1) <= s.after {
		return nil
	}
	s.blocked.Do(func() { fmt.Fprintln(os.Stdout, "cdc-helper: blocked") })
	<-ctx.Done()
	return ctx.Err()
}

func (s *blockingStore) ApplyCRM(ctx context.Context, id string, lsn uint64, fields map[string]any, remove []string) (bool, error) {
	if err := s.block(ctx); err != nil {
		return false, err
	}
	return s.Store.ApplyCRM(ctx, id, lsn, fields, remove)
}

func (s *blockingStore) ApplyEntry(ctx context.Context, id string, kind profile.EntryKind, key string, lsn uint64, columns map[string]any) (bool, error) {
	if err := s.block(ctx); err != nil {
		return false, err
	}
	return s.Store.ApplyEntry(ctx, id, kind, key, lsn, columns)
}

func (s *blockingStore) DeleteCRM(ctx context.Context, id string, lsn uint64, columns []string) (bool, error) {
	if err := s.block(ctx); err != nil {
		return false, err
	}
	return s.Store.DeleteCRM(ctx, id, lsn, columns)
}

// childProc is a helper process (TestCDC_HelperProcess) and its standard output.
type childProc struct {
	cmd    *exec.Cmd
	stdout io.Reader
}

// startChildWith starts the helper process with hc's options for the fixture's database.
func (f *fixture) startChildWith(t *testing.T, hc helperConfig) *childProc {
	t.Helper()
	hc.DatabaseURL, hc.Slot, hc.Publication = f.cfg.DatabaseURL, f.cfg.Slot, f.cfg.Publication
	hc.Table, hc.StackDir = f.store.Table(), testenv.Stack(t).Dir
	raw, err := json.Marshal(hc)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCDC_HelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CDC_HELPER_CONFIG="+string(raw), "TAILOR_TEST_DIR="+testenv.Stack(t).Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &childProc{cmd: cmd, stdout: stdout}
}

// startBlockingChild starts the helper process with a store that hangs after `after` writes
// and returns it with a channel closed once it hangs.
func (f *fixture) startBlockingChild(t *testing.T, after int) (*childProc, <-chan struct{}) {
	t.Helper()
	child := f.startChildWith(t, helperConfig{BlockAfter: after, BatchSize: 100})
	blocked := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(child.stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "cdc-helper: blocked") {
				close(blocked)
				break
			}
		}
		_, _ = io.Copy(io.Discard, child.stdout)
	}()
	return child, blocked
}

func TestCDC_ResumesABigTransactionAfterProcessKillMidway(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	const n = 5000
	// The first process applies 2 500 of the transaction's 10 000 changes, then DynamoDB hangs.
	child, blocked := f.startBlockingChild(t, 2500)
	eventually(t, time.Minute, func() error { // streaming: the backfill is recorded
		var done bool
		return f.env.Pool.QueryRow(ctx, "SELECT true FROM cdc_slots WHERE slot_name = $1", f.cfg.Slot).Scan(&done)
	})
	after, err := bigTransaction(ctx, f.env.Pool, n)
	require.NoError(t, err)
	select {
	case <-blocked:
	case <-time.After(3 * time.Minute):
		t.Fatal("the helper never reached its 2 500th write")
	}

	// Midway: the first segment is in DynamoDB, the last is not, and the slot has not moved
	// past the transaction's commit (b1's first version is its commit LSN + 1).
	p, err := f.profile("b1")
	require.NoError(t, err)
	require.Equal(t, "first", p["first_name"])
	commit := crmLSN(t, p) - 1
	_, err = f.profile(fmt.Sprintf("b%d", n))
	require.ErrorIs(t, err, profile.ErrNotFound)
	require.NoError(t, child.cmd.Process.Signal(syscall.SIGKILL))
	_ = child.cmd.Wait()
	lsn, ok := f.slotConfirmed(t)
	require.True(t, ok)
	require.LessOrEqual(t, parseLSN(t, lsn), commit, "the slot moved past a transaction that was not applied")

	// A new process replays the whole transaction: the applied part again as no-ops.
	replay := f.startChildWith(t, helperConfig{BatchSize: 100})
	go func() { _, _ = io.Copy(io.Discard, replay.stdout) }()
	f.waitSlotPast(t, after)
	requireProfilesMatch(t, f.env.Pool, f.store, time.Minute)
	p, err = f.profile("b1")
	require.NoError(t, err)
	require.Equal(t, "second", p["first_name"])
}

func TestCDC_TruncateInsideABigTransactionClearsWhatWasAppliedBeforeIt(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := f.startSmallBatches(t)
	ctx := context.Background()
	// The rows of the first segments are applied before the TRUNCATE arrives: it must clear
	// them though they come from its own transaction.
	err := pgx.BeginFunc(ctx, f.env.Pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO customers (id, email) SELECT 't' || g, 't' || g || '@example.com' FROM generate_series(1, 1200) g`)
		b.Queue(`INSERT INTO subscriptions (customer_id, topic, status) SELECT 't' || g, 'news', 'subscribed' FROM generate_series(1, 1200) g`)
		b.Queue(`TRUNCATE customers CASCADE`)
		b.Queue(`INSERT INTO customers (id, email) VALUES ('t1', 'back@example.com')`)
		b.Queue(`INSERT INTO subscriptions (customer_id, topic, status) VALUES ('t1', 'promo', 'pending')`)
		return tx.SendBatch(ctx, b).Close()
	})
	require.NoError(t, err)
	var after pglogrepl.LSN
	require.NoError(t, f.env.Pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&after))

	f.waitSlotPast(t, uint64(after))
	requireProfilesMatch(t, f.env.Pool, f.store, time.Minute)
	p, err := f.profile("t1")
	require.NoError(t, err)
	require.Equal(t, "back@example.com", p["email"], "written after the TRUNCATE: it survives it")
	require.Equal(t, "pending", path(p, "subscriptions.promo.status"))
	require.Nil(t, path(p, "subscriptions.news"))
	p, err = f.profile("t2")
	require.NoError(t, err)
	require.NotContains(t, p, "email")
	require.Less(t, c.PeakBuffered(), int64(2400), "applied in segments")
}
