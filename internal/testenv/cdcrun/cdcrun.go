// Package cdcrun runs change data capture for an integration test: the production wiring
// (internal/app) over the test's database and prefix, stopped when the test ends.
package cdcrun

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/cdc"
)

// Start runs CDC over env until the test ends and returns it. onApply, when set, is
// cdc.Config.OnApply.
func Start(t testing.TB, env *testenv.Env, onApply func(rows int, commits []time.Time)) *cdc.CDC {
	t.Helper()
	c, err := app.CDC(context.Background(), env.Backends, cdc.Config{
		Logger: slog.New(slog.DiscardHandler), StandbyTimeout: time.Second, LockPoll: 100 * time.Millisecond,
		RetryDelay: 100 * time.Millisecond, OnApply: onApply,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("cdc did not stop within 30s")
		}
	})
	return c
}

// CaughtUp reports whether CDC confirmed every change committed so far (the slot's confirmed
// position is at or past the current WAL position of an earlier call), for polling.
func CaughtUp(ctx context.Context, env *testenv.Env, lsn string) (bool, string) {
	var ok bool
	err := env.Pool.QueryRow(ctx, `SELECT $1::pg_lsn <= confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $2`, lsn, env.Names.Slot).Scan(&ok)
	return err == nil && ok, fmt.Sprintf("cdc has not confirmed %s (%v)", lsn, err)
}

// WALPosition returns the current WAL position, to wait for with CaughtUp.
func WALPosition(t testing.TB, env *testenv.Env) string {
	t.Helper()
	var lsn string
	require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn))
	return lsn
}
