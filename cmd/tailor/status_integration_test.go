package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tailor status against a running tailor work (with --metrics-addr): the report's JSON, the
// breakers read from the worker's /metrics, the worker's status gauges, and exit code 3 with
// the Postgres sections down when Postgres does not answer.
func TestCLI_StatusWithAWorkerRunning(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	workDone := make(chan int, 1)
	go func() {
		code, _ := e.run(ctx, "work", "--metrics-addr", addr)
		workDone <- code
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-workDone:
			require.Equal(t, exitOK, code)
		case <-time.After(45 * time.Second):
			t.Error("tailor work did not stop")
		}
	})
	url := "http://" + addr + "/metrics"
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode == http.StatusOK {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "tailor work's /metrics never answered: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range []string{"tailor_delivery_backlog_messages", "tailor_campaign_recipients_total", "tailor_render_seconds", "tailor_delivery_oldest_ready_age_seconds"} {
		require.True(t, strings.Contains(body, "# TYPE "+name+" "), "tailor work exports %s", name)
	}

	bad := filepath.Join(t.TempDir(), "bad.ndjson")
	require.NoError(t, os.WriteFile(bad, []byte(`{"bad": true}`+"\n"), 0o644))
	code, out := e.run(context.Background(), "events", "send", "--quiet", bad) // refused: a dead letter under events.cli
	require.Equal(t, exitFailure, code, out)
	out = e.ok("status", "--json", "--metrics-url", url)
	var r struct {
		Down      []string `json:"down"`
		Endpoints []struct {
			Name string `json:"name"`
			Up   bool   `json:"up"`
		} `json:"endpoints"`
		Breakers struct {
			Up   bool   `json:"up"`
			From string `json:"from"`
		} `json:"breakers"`
		DeadLetters struct {
			Sources []struct {
				Source  string `json:"source"`
				Pending int    `json:"pending"`
			} `json:"sources"`
		} `json:"dead_letters"`
		Senders struct {
			Up    bool `json:"up"`
			Ready int  `json:"ready"`
		} `json:"senders"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.Empty(t, r.Down, out)
	require.Len(t, r.Endpoints, 3)
	require.True(t, r.Breakers.Up)
	require.Equal(t, url, r.Breakers.From)
	require.True(t, r.Senders.Up)
	require.Len(t, r.DeadLetters.Sources, 1, out)
	require.Equal(t, "events.cli", r.DeadLetters.Sources[0].Source)
	require.Equal(t, 1, r.DeadLetters.Sources[0].Pending)

	// promtool lints the exposition (names, types, help) where it is installed.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		lint, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool check metrics: %s", lint)
	}

	// --watch reports again every --interval until interrupted, then exits 0.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watched syncBuffer
	watchDone := make(chan int, 1)
	go func() {
		watchDone <- run(watchCtx, append(append([]string{}, e.args...), "status", "--watch", "--json", "--interval", "100ms"), &watched, &watched)
	}()
	deadline = time.Now().Add(30 * time.Second)
	for strings.Count(watched.String(), `"at": `) < 3 {
		require.True(t, time.Now().Before(deadline), "--watch did not refresh: %s", watched.String())
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	require.Equal(t, exitOK, <-watchDone)

	text := e.ok("status")
	require.Contains(t, text, "events.cli")
	require.Contains(t, text, "tailor status at ")

	// Postgres that does not answer: its sections are down, the emulators' are not, exit 3.
	dead := "postgres://tailor@" + freeAddr(t) + "/none?connect_timeout=2"
	var buf syncBuffer
	code = run(context.Background(), []string{"tailor", "--dir", e.env.Stack.Dir, "--database-url", dead, "--prefix", e.env.Names.Prefix, "status", "--timeout", "3s"}, &buf, &buf)
	require.Equal(t, exitDegraded, code, buf.String())
	require.Contains(t, buf.String(), "DEGRADED: down postgres, cdc, queues, campaigns, dead_letters, senders")
	require.Regexp(t, `kinesis\s+\S+\s+up`, buf.String())
	require.True(t, strings.Contains(buf.String(), "STREAM "+e.env.Names.Stream+"\n"), "the stream section is read: %s", buf.String())
}
