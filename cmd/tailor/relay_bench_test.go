package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

// BenchmarkCampaignE2E_100kDelivered: the campaign of BenchmarkCampaignE2E_100k (100 000
// recipients, the ~11 KB newsletter, CAMPAIGN_BENCH_N), rendered by a `tailor work` process
// while a `tailor relay` process (16 connections, claims of 200) delivers it to the in-repo
// SMTP sink, which runs in this process and only counts: seconds from `campaign schedule
// --send-at now` of a draft to all messages accepted by the sink; the relay's peak RSS
// (VmHWM, the whole process), the CPU seconds of every process, the sink's (this process)
// included, which on a machine of two cores add up to about twice the wall time, and the
// share of the messages' updates that were heap-only. RELAY_BENCH_ARGS adds flags to tailor
// relay, RELAY_BENCH_CPUPROFILE=FILE writes its CPU profile.
func BenchmarkCampaignE2E_100kDelivered(b *testing.B) {
	n := benchRecipients()
	e := newCLIEnv(b)
	bin := filepath.Join(b.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(b, err, "%s", out)
	seedProfilesFunc(b, e, n, newsletterProfile)
	sink, err := smtpsink.Start(smtpsink.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	b.Cleanup(func() { _ = sink.Close() })

	ctx := context.Background()
	code, created := e.run(ctx, "campaign", "create", "--template", "testdata/newsletter", "--segment", "true")
	require.Equal(b, exitOK, code, created)
	id := createdID(b, created)

	start := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, append(append(append([]string{}, e.args[1:]...), "--log-level", "warn"), args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(b, cmd.Start())
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, &logs
	}
	work, workLogs := start("work")
	relayArgs := []string{"relay", "--smtp", sink.URL(), "--from", "Example Shop <news@shop.example>", "--campaign", id,
		"--concurrency", "16", "--claim-batch", "200", "--progress", "0"}
	relayArgs = append(relayArgs, strings.Fields(os.Getenv("RELAY_BENCH_ARGS"))...)
	if p := os.Getenv("RELAY_BENCH_CPUPROFILE"); p != "" {
		relayArgs = append(relayArgs, "--cpuprofile", p)
	}
	relay, relayLogs := start(relayArgs...)

	if v := os.Getenv("RELAY_BENCH_TABLE_OPTIONS"); v != "" {
		// e.g. autovacuum_enabled=false: what the table's maintenance costs during the run.
		_, err := e.env.Pool.Exec(ctx, "ALTER TABLE rendered_messages SET ("+v+")")
		require.NoError(b, err)
	}
	stack := testenv.Stack(b)
	cpu0 := stackCPU(stack)
	kin0, _ := processCPU(stack.Kinesis.PID, false)
	self0 := selfCPU()
	b.ResetTimer()
	t0 := time.Now()
	code, scheduled := e.run(ctx, "campaign", "schedule", "--send-at", "now", id)
	require.Equal(b, exitOK, code, scheduled)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	renderedAt := make(chan time.Duration, 1)
	go func() {
		for wctx.Err() == nil {
			var status string
			if e.env.Pool.QueryRow(wctx, `SELECT status FROM campaigns WHERE id = $1`, id).Scan(&status) == nil && status == "rendered" {
				renderedAt <- time.Since(t0)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		renderedAt <- 0
	}()
	err = sink.WaitFor(wctx, func(s smtpsink.Stats) bool { return s.Accepted >= int64(n) })
	require.NoError(b, err, "accepted %d of %d\nwork: %s\nrelay: %s", sink.Stats().Accepted, n, workLogs, relayLogs)
	elapsed := time.Since(t0)
	b.StopTimer()
	sinkCPU := selfCPU() - self0
	b.ReportMetric((<-renderedAt).Seconds(), "rendered_s")

	cpu := stackCPU(stack)
	kin, _ := processCPU(stack.Kinesis.PID, false)
	peak, err := peakRSS(relay.Process.Pid)
	require.NoError(b, err)
	relayCPU, err := processCPU(relay.Process.Pid, false)
	require.NoError(b, err)
	workCPU, err := processCPU(work.Process.Pid, false)
	require.NoError(b, err)
	require.NoError(b, relay.Process.Signal(syscall.SIGTERM))
	require.NoError(b, relay.Wait(), "%s", relayLogs)
	st := sink.Stats()
	require.Equal(b, int64(n), st.Accepted, "each message once")
	var sent int
	require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT count(*) FROM rendered_messages WHERE campaign_id = $1 AND delivery = 'sent'`, id).Scan(&sent))
	require.Equal(b, n, sent, "every message acked as sent")

	// How many of the messages' updates (claims and acks) were heap-only: claims can be
	// (migration 011), acks cannot. The backends' statistics reach pg_stat within a second.
	var upd, hot int64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relid = 'rendered_messages'::regclass`).Scan(&upd, &hot))
		if upd >= 2*int64(n) || time.Now().After(deadline) {
			break
		}
	}
	if upd > 0 {
		b.ReportMetric(100*float64(hot)/float64(upd), "hot_update_pct")
	}
	b.ReportMetric(elapsed.Seconds(), "seconds")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "delivered/s")
	b.ReportMetric(float64(peak)/(1<<20), "relay_peak_rss_mb")
	b.ReportMetric(relayCPU.Seconds(), "relay_cpu_s")
	b.ReportMetric(workCPU.Seconds(), "work_cpu_s")
	b.ReportMetric(sinkCPU.Seconds(), "sink_cpu_s") // this process: the sink and the polling
	b.ReportMetric(float64(st.Bytes)/float64(n), "bytes/msg")
	b.ReportMetric((cpu.postgres - cpu0.postgres).Seconds(), "postgres_cpu_s")
	b.ReportMetric((cpu.dynamodb - cpu0.dynamodb).Seconds(), "dynamodb_cpu_s")
	b.ReportMetric((kin - kin0).Seconds(), "kinesis_cpu_s")
	b.ReportMetric(0, "ns/op")
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
