package cluster

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestParseCounts_DefaultsOverridesAndErrors(t *testing.T) {
	got, err := ParseCounts("")
	require.NoError(t, err)
	require.Equal(t, map[string]int{"cdc": 2, "consume": 2, "work": 2, "serve": 2, "relay": 1}, got)
	got, err = ParseCounts("work=3, relay=0")
	require.NoError(t, err)
	require.Equal(t, 3, got["work"])
	require.Equal(t, 0, got["relay"])
	require.Equal(t, 2, got["serve"])
	for in, want := range map[string]string{"work": "want ROLE=N", "work=-1": "0 to 16", "mailer=1": `unknown role "mailer"`} {
		_, err := ParseCounts(in)
		require.ErrorContains(t, err, want, in)
	}
}

// Real processes on the test stack: a serve and a work process start with their own logs and
// Postgres application names; a SIGKILLed serve restarts on its port; an optional role the
// binary lacks is skipped; Stop ends everything.
func TestCluster_StartsKillsRestartsAndStops(t *testing.T) {
	env := testenv.New(t)
	st := testenv.Stack(t)
	bin := filepath.Join(t.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tailor").CombinedOutput()
	require.NoError(t, err, "%s", out)
	keys, err := NewKeys()
	require.NoError(t, err)
	logs := t.TempDir()
	var notes []string
	ctx := context.Background()
	c, err := Start(ctx, Config{
		Binary: bin, GlobalArgs: []string{"--dir", st.Dir, "--database-url", st.DatabaseURL(env.Database), "--prefix", env.Names.Prefix},
		Counts:   map[string]int{"cdc": 0, "consume": 0, "work": 1, "serve": 1, "relay": 1},
		RoleArgs: keys.RoleArgs("http://127.0.0.1:1"), LogDir: logs,
		Note: func(f string, a ...any) { notes = append(notes, f) },
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if len(c.Of("relay")) == 0 {
		require.Equal(t, []string{"relay"}, c.Skipped())
		require.NotEmpty(t, notes)
	}
	require.Len(t, c.Of("work"), 1)
	serve := c.Get("serve-0")
	require.NotNil(t, serve)
	require.NotZero(t, serve.Port)
	healthy := func(addr string) bool {
		res, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	require.Eventually(t, func() bool { return healthy(serve.Addr()) }, 30*time.Second, 50*time.Millisecond)
	var apps int
	require.Eventually(t, func() bool {
		return env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tailor-work-0'`).Scan(&apps) == nil && apps > 0
	}, 30*time.Second, 50*time.Millisecond, "work's sessions carry PGAPPNAME")

	_, err = c.Restart("serve-0")
	require.ErrorContains(t, err, "still runs")
	killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, c.Kill(killCtx, serve))
	require.False(t, serve.Running())
	again, err := c.Restart("serve-0")
	require.NoError(t, err)
	require.Equal(t, serve.Port, again.Port)
	require.NotEqual(t, serve.PID, again.PID)
	require.Eventually(t, func() bool { return healthy(again.Addr()) }, 30*time.Second, 50*time.Millisecond)

	require.NoError(t, c.Stop(ctx))
	for _, p := range c.Procs() {
		require.False(t, p.Running(), p.Name())
	}
	b, err := os.ReadFile(again.Log)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(b), "---- "), "one log per process, appended across restarts")
	require.NotContains(t, string(b), keys.TokenKey, "secrets stay out of the log")
	require.NotContains(t, string(b), keys.WebhookSecret)
}
