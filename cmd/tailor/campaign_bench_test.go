package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/localstack"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates/contentdemo"
)

// benchRecipients is the audience of the end-to-end campaign benchmarks (CAMPAIGN_BENCH_N).
func benchRecipients() int {
	if n, err := strconv.Atoi(os.Getenv("CAMPAIGN_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkCampaignE2E_100k: 100 000 recipients, the ~11 KB newsletter of testdata/newsletter
// (five product blocks from each recipient's own picks), no content sources, rendered by a
// real `tailor work` process: seconds from `campaign schedule --send-at now` of a draft to all
// rendered, renders per second, the process's peak RSS (VmHWM), what the messages occupy in
// Postgres (pg_total_relation_size of rendered_messages with lz4 TOAST compression, and of a
// copy at the default pglz) and the CPU seconds of tailor work, Postgres and the DynamoDB
// emulator. CAMPAIGN_BENCH_N sets the audience, CAMPAIGN_BENCH_COMPRESSION=pglz|lz4 the
// bodies' compression during the run, CAMPAIGN_BENCH_BODY=plain the benchmark's first data.
func BenchmarkCampaignE2E_100k(b *testing.B) { benchCampaign(b, false) }

// BenchmarkCampaignE2E_100kContent is the same with two content sources at 20 ms latency,
// cached per distinct URL (one per recipient, one shared).
func BenchmarkCampaignE2E_100kContent(b *testing.B) { benchCampaign(b, true) }

func benchCampaign(b *testing.B, content bool) {
	n := benchRecipients()
	e := newCLIEnv(b)
	bin := filepath.Join(b.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(b, err, "%s", out)

	tpl := "testdata/newsletter"
	if os.Getenv("CAMPAIGN_BENCH_BODY") == "plain" {
		// The first form of this benchmark, to compare with its figures: profiles with an
		// address and a first name only, one paragraph repeated a hundred times.
		seedProfiles(b, e, "b", n)
		tpl = b.TempDir()
		html := "<p>Hello {{ customer.first_name }}</p>" + strings.Repeat("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. {{ customer.customer_id }}</p>\n", 100)
		for name, body := range map[string]string{"template.yaml": "name: bench\nversion: 1\n", "subject": "Hi {{ customer.first_name }}", "html": html, "text": "Hi"} {
			require.NoError(b, os.WriteFile(filepath.Join(tpl, name), []byte(body), 0o644))
		}
	} else {
		seedProfilesFunc(b, e, n, newsletterProfile)
	}
	if content {
		h, err := contentdemo.NewHandler(contentdemo.Config{Latency: 20 * time.Millisecond})
		require.NoError(b, err)
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		tpl = b.TempDir()
		require.NoError(b, os.CopyFS(tpl, os.DirFS("testdata/newsletter")))
		sources := fmt.Sprintf("content:\n  recs:\n    url: \"%s/recommendations?customer={{ customer.customer_id }}\"\n    timeout: 2s\n    cache_ttl: 10m\n  offer:\n    url: \"%s/offer\"\n    timeout: 2s\n    cache_ttl: 10m\n", srv.URL, srv.URL)
		appendFile(b, filepath.Join(tpl, "template.yaml"), sources)
		appendFile(b, filepath.Join(tpl, "html"), "{% for i in content.recs.items %}<li>{{ i.name }}</li>{% endfor %}{{ content.offer.headline }}")
	}
	args := append(e.args[1:], "--log-level", "warn", "work")
	// CAMPAIGN_BENCH_WORK_ARGS adds flags to `tailor work` (e.g. --render-workers 8);
	// CAMPAIGN_BENCH_CPUPROFILE=FILE writes its Go CPU profile.
	args = append(args, strings.Fields(os.Getenv("CAMPAIGN_BENCH_WORK_ARGS"))...)
	profile := os.Getenv("CAMPAIGN_BENCH_CPUPROFILE")
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(b, cmd.Start())
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if c := os.Getenv("CAMPAIGN_BENCH_COMPRESSION"); c != "" {
		// pglz (Postgres's default) or lz4 (the migration's): what compression costs Postgres.
		_, err := e.env.Pool.Exec(context.Background(), fmt.Sprintf(`ALTER TABLE rendered_messages ALTER COLUMN html SET COMPRESSION %s,
			ALTER COLUMN text_body SET COMPRESSION %[1]s`, pgx.Identifier{c}.Sanitize()))
		require.NoError(b, err)
	}
	if v := os.Getenv("CAMPAIGN_BENCH_TABLE_OPTIONS"); v != "" {
		// e.g. toast_tuple_target=4080: what a storage parameter of the messages costs or saves.
		_, err := e.env.Pool.Exec(context.Background(), "ALTER TABLE rendered_messages SET ("+v+")")
		require.NoError(b, err)
	}
	if v := os.Getenv("CAMPAIGN_BENCH_SQL"); v != "" {
		// A schema experiment before the run (e.g. DROP TRIGGER ...): what it costs or saves.
		_, err := e.env.Pool.Exec(context.Background(), v)
		require.NoError(b, err)
	}
	stack := testenv.Stack(b)
	cpu0 := stackCPU(stack)

	ctx := context.Background()
	code, created := e.run(ctx, "campaign", "create", "--template", tpl, "--segment", "true")
	require.Equal(b, exitOK, code, created)
	id := createdID(b, created)
	b.ResetTimer()
	start := time.Now()
	code, scheduled := e.run(ctx, "campaign", "schedule", "--send-at", "now", id)
	require.Equal(b, exitOK, code, scheduled)
	deadline := time.Now().Add(20 * time.Minute)
	var fannedOut time.Duration
	for {
		var status string
		var done bool
		require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT status, fanout_done FROM campaigns WHERE id = $1`, id).Scan(&status, &done))
		if done && fannedOut == 0 {
			fannedOut = time.Since(start)
		}
		if status == "rendered" {
			break
		}
		require.Contains(b, []string{"scheduled", "running"}, status)
		require.True(b, time.Now().Before(deadline), "not rendered: %s", logs.String())
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := stackCPU(stack)
	work, err := processCPU(cmd.Process.Pid, false)
	require.NoError(b, err)
	peak, err := peakRSS(cmd.Process.Pid)
	require.NoError(b, err)
	if profile != "" {
		require.NoError(b, cmd.Process.Signal(syscall.SIGTERM))
		_ = cmd.Wait()
	}
	var rendered int
	var size, heap, stored, raw int64
	require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT count(*), pg_total_relation_size('rendered_messages'), pg_relation_size('rendered_messages'),
		sum(pg_column_size(html)), sum(octet_length(html)) FROM rendered_messages WHERE campaign_id = $1 AND status = 'rendered'`, id).Scan(&rendered, &size, &heap, &stored, &raw))
	require.Equal(b, n, rendered)
	// When the first and the last batch were recorded (their transactions' start), from the
	// schedule: the run's idle start and its tail.
	var first, last time.Time
	require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT min(created_at), max(created_at) FROM rendered_messages WHERE campaign_id = $1`, id).Scan(&first, &last))
	b.ReportMetric(elapsed.Seconds(), "seconds")
	b.ReportMetric(fannedOut.Seconds(), "fanout_s")
	b.ReportMetric(first.Sub(start).Seconds(), "first_batch_s")
	b.ReportMetric(last.Sub(start).Seconds(), "last_batch_s")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "renders/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak_rss_mb")
	b.ReportMetric(float64(size)/(1<<20), "table_mb")
	b.ReportMetric(float64(heap)/(1<<20), "heap_mb") // the rows without their TOASTed bodies and the indexes
	b.ReportMetric(float64(raw)/(1<<20), "html_raw_mb")
	b.ReportMetric(float64(stored)/(1<<20), "html_stored_mb")
	if !content {
		// The same rows with the bodies at Postgres's default compression (pglz), for the
		// closing note's before/after: a copy of the table with the same indexes; `|| ''` makes
		// new values, which the copy compresses its own way (an unchanged compressed value
		// would keep its lz4).
		for _, stmt := range []string{
			`CREATE TABLE rendered_messages_pglz (LIKE rendered_messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`,
			`ALTER TABLE rendered_messages_pglz ALTER COLUMN html SET COMPRESSION pglz, ALTER COLUMN text_body SET COMPRESSION pglz`,
			// LIKE copies no storage parameters: the copy gets the table's (fillfactor, migration 011).
			`DO $$ DECLARE opts text; BEGIN
				SELECT array_to_string(reloptions, ', ') INTO opts FROM pg_class WHERE oid = 'rendered_messages'::regclass;
				IF opts <> '' THEN EXECUTE 'ALTER TABLE rendered_messages_pglz SET (' || opts || ')'; END IF;
			END $$`,
			`INSERT INTO rendered_messages_pglz SELECT id, campaign_id, customer_id, email, status, subject, preheader, html || '', text_body || '',
				headers, provenance, reason, created_at, not_before, occurrence, variant, claimed_at FROM rendered_messages`,
		} {
			_, err := e.env.Pool.Exec(ctx, stmt)
			require.NoError(b, err, stmt)
		}
		var pglz int64
		var methods []string
		require.NoError(b, e.env.Pool.QueryRow(ctx, `SELECT pg_total_relation_size('rendered_messages_pglz'),
			(SELECT array_agg(DISTINCT COALESCE(pg_column_compression(html), 'none')) FROM rendered_messages_pglz)`).Scan(&pglz, &methods))
		require.Equal(b, []string{"pglz"}, methods)
		b.ReportMetric(float64(pglz)/(1<<20), "table_pglz_mb")
	}
	// CPU seconds each process spent while the campaign ran (the stack is shared with any
	// benchmark running at the same time): where the time goes on a machine of few cores.
	b.ReportMetric(work.Seconds(), "work_cpu_s")
	b.ReportMetric((cpu.postgres - cpu0.postgres).Seconds(), "postgres_cpu_s")
	b.ReportMetric((cpu.dynamodb - cpu0.dynamodb).Seconds(), "dynamodb_cpu_s")
	b.ReportMetric(0, "ns/op")
}

type componentCPU struct{ postgres, dynamodb time.Duration }

// stackCPU returns the CPU time the local stack's Postgres (the postmaster and its backends,
// live and exited) and DynamoDB emulator have used so far; zero where it cannot be read.
func stackCPU(st *localstack.State) componentCPU {
	pg, _ := processCPU(st.Postgres.PID, true)
	dyn, _ := processCPU(st.DynamoDB.PID, false)
	return componentCPU{postgres: pg, dynamodb: dyn}
}

// processCPU returns a process's user+system CPU time from /proc; with children, that of its
// exited children (cutime, cstime) and of its live children as well.
func processCPU(pid int, children bool) (time.Duration, error) {
	ticks, err := statTicks(pid, children)
	if err != nil {
		return 0, err
	}
	if children {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(kids)) {
			if kid, err := strconv.Atoi(f); err == nil {
				n, _ := statTicks(kid, false)
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// statTicks sums utime and stime (and cutime, cstime with children) of /proc/PID/stat.
func statTicks(pid int, children bool) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	last := 13 // f[11], f[12] are utime and stime (fields 14 and 15)
	if children {
		last = 15
	}
	var n int64
	for _, s := range f[11 : last+1] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		n += v
	}
	return n, nil
}

func appendFile(t testing.TB, path, text string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(text)
	require.NoError(t, errors.Join(err, f.Close()))
}

// The benchmark newsletter's data: every recipient has five picks from a catalogue of 240
// products (name, category, price, sometimes a former price, a blurb), so bodies vary by
// recipient as a real newsletter's do.
var (
	benchNames     = []string{"Ada", "Bruno", "Chloé", "Dmitri", "Elif", "Farah", "Gustav", "Hana", "Iker", "Jun", "Kemal", "Léa", "Mateo", "Nadia", "Oskar", "Priya"}
	benchCountries = []string{"DE", "FR", "ES", "IT", "NL", "AT", "BE", "PL"}
	benchCatalogue = sync.OnceValue(func() []map[string]any {
		adjectives := []string{"Relaxed", "Classic", "Slim", "Oversized", "Everyday", "Weekend", "Travel", "Heritage", "Studio", "Trail", "Coastal", "Urban"}
		materials := []string{"Linen", "Merino", "Cotton", "Denim", "Leather", "Cashmere", "Canvas", "Suede", "Wool", "Silk"}
		nouns := map[string][]string{"clothing": {"Shirt", "Sweater", "Jacket", "Trousers"}, "shoes": {"Sneakers", "Boots", "Loafers"},
			"accessories": {"Scarf", "Belt", "Tote Bag", "Cap"}, "home": {"Throw", "Cushion Cover", "Table Runner"}}
		blurbs := []string{"Cut for an easy fit and made to last.", "Soft on the skin, warm when it counts.", "Our customers' favourite, back in new colours.",
			"Pairs with everything in your wardrobe.", "Responsibly sourced and finished by hand.", "Light enough to pack, tough enough to travel.",
			"Machine washable at 30°C.", "Limited run: once it is gone, it is gone.", "Rated 4.8 by more than 2,000 customers.",
			"Designed in Berlin, made in Portugal.", "Breathable, quick-drying and wrinkle-free.", "A modern take on a timeless classic."}
		cats := []string{"clothing", "shoes", "accessories", "home"}
		r := rand.New(rand.NewPCG(1, 2))
		out := make([]map[string]any, 240)
		for i := range out {
			cat := cats[i%len(cats)]
			name := fmt.Sprintf("%s %s %s", adjectives[r.IntN(len(adjectives))], materials[r.IntN(len(materials))], nouns[cat][r.IntN(len(nouns[cat]))])
			price := 990 + r.IntN(190)*100
			was := 0
			if r.IntN(3) == 0 {
				was = price + 500 + r.IntN(20)*100
			}
			out[i] = map[string]any{"sku": fmt.Sprintf("SKU-%05d", 10000+i*37), "name": name, "category": cat, "price": price, "was": was,
				"image": strings.ToLower(strings.ReplaceAll(name, " ", "-")), "blurb": blurbs[r.IntN(len(blurbs))] + " " + blurbs[r.IntN(len(blurbs))]}
		}
		return out
	})
)

// newsletterProfile is benchmark recipient i: a name, a country and five picks of its own.
func newsletterProfile(i int) *profile.Profile {
	r := rand.New(rand.NewPCG(uint64(i), 3))
	cat := benchCatalogue()
	picks := make([]any, 5)
	for j, k := range r.Perm(len(cat))[:len(picks)] {
		picks[j] = cat[k]
	}
	return &profile.Profile{ID: fmt.Sprintf("b%06d", i), CRM: profile.CRM{Email: fmt.Sprintf("b%d@example.com", i), FirstName: benchNames[i%len(benchNames)],
		Locale: "en", Country: benchCountries[r.IntN(len(benchCountries))], Attributes: map[string]any{"picks": picks}}}
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
