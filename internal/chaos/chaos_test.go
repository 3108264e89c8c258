package chaos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain needs no stack: the invariant tests are pure, and TestChaos_Short runs on the
// stack in $TAILOR_TEST_DIR (make test's) only.
func TestMain(m *testing.M) { os.Exit(m.Run()) }

// The short fault matrix over a real cluster on make test's stack: every role SIGKILLed once
// and restarted, the content API down and slow, the workers' sessions terminated, a sender
// that never acks; every invariant must hold. TAILOR_CHAOS_SEED reproduces a run's choices.
func TestChaos_Short(t *testing.T) {
	dir := os.Getenv("TAILOR_TEST_DIR")
	if dir == "" || testing.Short() {
		t.Skip("needs the local stack in TAILOR_TEST_DIR (make test)")
	}
	bin := filepath.Join(t.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tailor").CombinedOutput()
	require.NoError(t, err, "%s", out)
	cfg := Short()
	cfg.Binary, cfg.StackDir = bin, dir
	if s := os.Getenv("TAILOR_CHAOS_SEED"); s != "" {
		cfg.Seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "TAILOR_CHAOS_SEED")
	}
	var progress strings.Builder
	cfg.Out = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	require.NoError(t, err, "%s", progress.String())
	var table strings.Builder
	rep.Print(&table)
	t.Logf("\n%s", table.String())
	if !rep.OK() {
		t.Fatalf("chaos (seed %d, rerun with TAILOR_CHAOS_SEED=%d):\n%s", rep.Seed, rep.Seed, progress.String())
	}
}
