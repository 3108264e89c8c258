package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/templates/contentdemo"
)

// benchRecipients is the audience of the end-to-end campaign benchmarks (CAMPAIGN_BENCH_N).
func benchRecipients() int {
	if n, err := strconv.Atoi(os.Getenv("CAMPAIGN_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkCampaignE2E_100k: 100 000 recipients, a ~11 KB body, no content sources, rendered
// by a real `tailor work` process: seconds from `campaign create --send-at now` to all
// rendered, renders per second, the process's peak RSS (VmHWM), and what the messages occupy
// in Postgres (pg_total_relation_size of rendered_messages, lz4 TOAST compression).
func BenchmarkCampaignE2E_100k(b *testing.B) { benchCampaign(b, false) }

// BenchmarkCampaignE2E_100kContent is the same with two content sources at 20 ms latency,
// cached per distinct URL (one per recipient, one shared).
func BenchmarkCampaignE2E_100kContent(b *testing.B) { benchCampaign(b, true) }

func benchCampaign(b *testing.B, content bool) {
	n := benchRecipients()
	e := newCLIEnv(b)
	seedProfiles(b, e, "b", n)
	bin := filepath.Join(b.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(b, err, "%s", out)

	tpl := b.TempDir()
	manifest := "name: bench\nversion: 1\n"
	html := "<p>Hello {{ customer.first_name }}</p>" + strings.Repeat("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. {{ customer.customer_id }}</p>\n", 100)
	if content {
		h, err := contentdemo.NewHandler(contentdemo.Config{Latency: 20 * time.Millisecond})
		require.NoError(b, err)
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		manifest += fmt.Sprintf("content:\n  recs:\n    url: \"%s/recommendations?customer={{ customer.customer_id }}\"\n    timeout: 2s\n    cache_ttl: 10m\n  offer:\n    url: \"%s/offer\"\n    timeout: 2s\n    cache_ttl: 10m\n", srv.URL, srv.URL)
		html += "{% for i in content.recs.items %}<li>{{ i.name }}</li>{% endfor %}{{ content.offer.headline }}"
	}
	for name, body := range map[string]string{"template.yaml": manifest, "subject": "Hi {{ customer.first_name }}", "html": html, "text": "Hi"} {
		require.NoError(b, os.WriteFile(filepath.Join(tpl, name), []byte(body), 0o644))
	}
	cmd := exec.Command(bin, append(e.args[1:], "--log-level", "warn", "work")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(b, cmd.Start())
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	code, created := e.run(ctx, "campaign", "create", "--template", tpl, "--segment", "true", "--send-at", "now")
	require.Equal(b, exitOK, code, created)
	id := createdID(b, created)
	deadline := time.Now().Add(20 * time.Minute)
	for {
		var status string
		require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT status FROM campaigns WHERE id = $1`, id).Scan(&status))
		if status == "rendered" {
			break
		}
		require.Contains(b, []string{"scheduled", "running"}, status)
		require.True(b, time.Now().Before(deadline), "not rendered: %s", logs.String())
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	peak, err := peakRSS(cmd.Process.Pid)
	require.NoError(b, err)
	var rendered int
	var size, stored, raw int64
	require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT count(*), pg_total_relation_size('rendered_messages'),
		sum(pg_column_size(html)), sum(octet_length(html)) FROM rendered_messages WHERE campaign_id = $1 AND status = 'rendered'`, id).Scan(&rendered, &size, &stored, &raw))
	require.Equal(b, n, rendered)
	b.ReportMetric(elapsed.Seconds(), "seconds")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "renders/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak_rss_mb")
	b.ReportMetric(float64(size)/(1<<20), "table_mb")
	b.ReportMetric(float64(raw)/(1<<20), "html_raw_mb")
	b.ReportMetric(float64(stored)/(1<<20), "html_stored_mb")
	b.ReportMetric(0, "ns/op")
}

// peakRSS returns a process's peak resident set size in bytes (VmHWM).
func peakRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/<pid>/status")
}
