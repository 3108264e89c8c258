package cluster

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
)

// statusReport is the part of `tailor status --json` this test reads.
type statusReport struct {
	Down   []string `json:"down"`
	Stream struct {
		Shards []struct {
			ShardID string `json:"shard_id"`
			Owner   string `json:"owner"`
			Held    bool   `json:"held"`
		} `json:"shards"`
	} `json:"stream"`
	CDC struct {
		Exists bool `json:"exists"`
		Active bool `json:"active"`
	} `json:"cdc"`
}

// tailor status against a running cluster: every shard held by one of its consumers, the CDC
// slot streaming; after SIGKILL of the streaming cdc process the standby takes the slot over
// and status shows it active again.
func TestCluster_StatusSeesTheCluster(t *testing.T) {
	env := testenv.New(t)
	st := testenv.Stack(t)
	bin := filepath.Join(t.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tailor").CombinedOutput()
	require.NoError(t, err, "%s", out)
	global := []string{"--dir", st.Dir, "--database-url", st.DatabaseURL(env.Database), "--prefix", env.Names.Prefix}
	ctx := context.Background()
	c, err := Start(ctx, Config{
		Binary: bin, GlobalArgs: global,
		Counts: map[string]int{"cdc": 2, "consume": 2, "work": 0, "serve": 0, "relay": 0},
		LogDir: t.TempDir(), Note: func(string, ...any) {},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	status := func() (statusReport, int, string) {
		cmd := exec.Command(bin, append(slices.Clone(global), "status", "--json")...)
		out, _ := cmd.Output()
		var r statusReport
		if err := json.Unmarshal(out, &r); err != nil {
			return r, -1, string(out)
		}
		return r, cmd.ProcessState.ExitCode(), string(out)
	}
	healthy := func(r statusReport, code int) bool {
		if code != 0 || len(r.Down) > 0 || !r.CDC.Active || len(r.Stream.Shards) == 0 {
			return false
		}
		for _, s := range r.Stream.Shards {
			if !s.Held || s.Owner == "" {
				return false
			}
		}
		return true
	}
	waitHealthy := func(what string, extra func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r, code, raw := status()
			if (extra == nil || extra()) && healthy(r, code) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last status (exit %d):\n%s", what, code, raw)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitHealthy("every shard held and the slot streaming", nil)
	r, _, _ := status()
	owners := map[string]bool{}
	for _, s := range r.Stream.Shards {
		owners[s.Owner] = true
	}
	require.LessOrEqual(t, len(owners), 2, "the owners are the cluster's two consumers: %v", owners)

	// Kill whichever cdc process streams; the standby takes over and status shows the slot
	// active again.
	var app string
	require.NoError(t, env.Pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_replication WHERE application_name LIKE 'tailor-cdc-%' LIMIT 1`).Scan(&app))
	streaming := c.Get(app[len("tailor-"):])
	require.NotNil(t, streaming, app)
	killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, c.Kill(killCtx, streaming))
	waitHealthy("the standby streams and status says so", func() bool {
		var now string
		return env.Pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_replication WHERE application_name LIKE 'tailor-cdc-%' LIMIT 1`).Scan(&now) == nil && now != app
	})
}
