// Command benchreport turns `go test -bench` output into BENCHMARKS.md (for people) and
// bench/results.json (for tools: a list of {"name","value","unit","command"} figures, named as
// the issues name them). `make bench` runs it; it measures nothing itself.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Figure is one named result.
type Figure struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Command string  `json:"command"`
}

// A result is one benchmark line: its package, name and metrics by unit.
type result struct {
	pkg, name string
	metrics   map[string]float64
	units     []string // in line order
}

// named maps a benchmark metric to the figure name an issue asks for.
type named struct {
	bench, unit string // benchmark name (without -N suffix) and the metric's unit in go test output
	name, out   string // figure name and unit
	convert     func(float64) float64
	target      string
}

func perSecond(nsPerOp float64) float64 { return 1e9 / nsPerOp }
func same(v float64) float64            { return v }

var namedFigures = []named{
	{"BenchmarkRender", "ns/op", "render.renders_per_sec", "renders/s", perSecond, ">= 10 000 on one core"},
	{"BenchmarkRender", "allocs/op", "render.allocs_per_render", "allocs", same, ""},
	{"BenchmarkRenderBatchJob", "messages/s", "jobs.render_batch.messages_per_sec", "messages/s", same, ""},
	{"BenchmarkStore_ClaimAck", "msgs/s", "sender.claim_ack.msgs_per_sec", "messages/s", same, ">= 10 000 (batches of 100, 4 concurrent senders)"},
	{"BenchmarkCampaignE2E_100kDelivered", "seconds", "campaign.e2e_100k_delivered.seconds", "s", same, "<= 12 on this machine (schedule now -> all 100 000 accepted by the sink through tailor relay)"},
	{"BenchmarkCampaignE2E_100kDelivered", "relay_peak_rss_mb", "relay.peak_rss_mb", "MB", same, "< 150 (tailor relay, whole process)"},
	{"BenchmarkRelay_Sink", "msgs/s", "relay.sink_msgs_per_sec", "messages/s", same, "100 000 x 11 KB, in-memory source, 16 connections to the in-repo sink"},
	{"BenchmarkRelay_Sink", "heap_peak_mb", "relay.sink_heap_peak_mb", "MB", same, "the relay's live Go heap; the issue's relay.peak_rss_mb (whole process) < 150"},
	{"BenchmarkAggregate", "events/s", "stream.aggregate.events_per_sec", "events/s", same, ">= 200 000 on one core"},
	{"BenchmarkStreamE2E", "events/s", "stream.e2e.events_per_sec", "events/s", same, ""},
	{"BenchmarkStreamE2E", "p50_ms", "stream.e2e.latency_p50_ms", "ms", same, ""},
	{"BenchmarkStreamE2E", "p99_ms", "stream.e2e.latency_p99_ms", "ms", same, "< 1 000 at 1 000 events/s"},
	{"BenchmarkCDC", "rows/s", "cdc.rows_per_sec", "rows/s", same, ""},
	{"BenchmarkCDC", "p50_ms", "cdc.latency_p50_ms", "ms", same, ""},
	{"BenchmarkCDC", "p99_ms", "cdc.latency_p99_ms", "ms", same, "< 500 at 1 000 changes/s"},
	{"BenchmarkCDC_BigTransaction", "peak_rss_mb", "cdc.big_transaction.peak_rss_mb", "MB", same, "< 200 for one transaction of 200 000 rows x 2 KB"},
	{"BenchmarkCDC_BigTransaction", "rows/s", "cdc.big_transaction.rows_per_sec", "rows/s", same, ""},
	{"BenchmarkWebhook", "changes/s", "webhook.changes_per_sec", "changes/s", same, "signatures checked, 4 concurrent clients"},
	{"BenchmarkWebhook", "p99_ms", "webhook.latency_p99_ms", "ms", same, "tens of ms"},
	{"BenchmarkWebhook", "to_profile_p99_ms", "webhook.to_profile_p99_ms", "ms", same, "at 100 changes/s"},
	{"BenchmarkOneClickUnsubscribe", "p99_ms", "unsubscribe.latency_p99_ms", "ms", same, "4 concurrent clients"},
	{"BenchmarkCampaignE2E_100k", "seconds", "campaign.e2e_100k.seconds", "s", same, "<= 10 on this machine (schedule now -> all rendered)"},
	{"BenchmarkCampaignE2E_100k", "renders/s", "campaign.e2e.renders_per_sec", "renders/s", same, ""},
	{"BenchmarkCampaignE2E_100k", "peak_rss_mb", "campaign.work_peak_rss_mb", "MB", same, "< 300, flat from 10k to 100k recipients"},
	{"BenchmarkCampaignE2E_100k", "table_mb", "campaign.rendered_messages_100k_mb", "MB", same, "pg_total_relation_size, lz4"},
	{"BenchmarkCampaignE2E_100kContent", "seconds", "campaign.e2e_100k_content.seconds", "s", same, "two sources at 20 ms, cached per URL"},
	{"BenchmarkRiverInsertMany", "jobs/s", "river.insert_many.jobs_per_sec", "jobs/s", same, ""},
	{"BenchmarkCampaignE2E_100k", "table_pglz_mb", "campaign.rendered_messages_100k_pglz_mb", "MB", same, "the same rows at pglz, for comparison"},
	{"BenchmarkNewsletterRender", "renders/s", "campaign.newsletter_render.renders_per_sec", "renders/s", same, "tailor work's per-message code in process (profile view + ~11 KB newsletter), one core"},
	{"BenchmarkNewsletterRender", "allocs/op", "campaign.newsletter_render.allocs", "allocs", same, ""},
	{"BenchmarkQP/tailor", "MB/s", "relay.quoted_printable_mb_per_sec", "MB/s", same, "the relay's encoder (the standard library's: relay.quoted_printable_stdlib_mb_per_sec)"},
	{"BenchmarkQP/stdlib", "MB/s", "relay.quoted_printable_stdlib_mb_per_sec", "MB/s", same, ""},
	{"BenchmarkRewrite", "ns/op", "tracking.rewrite_us", "us", func(v float64) float64 { return v / 1e3 }, "opens and clicks on an ~11 KB newsletter"},
	{"BenchmarkHandler_Click", "ns/op", "tracking.click_ms", "ms", func(v float64) float64 { return v / 1e6 }, "token check, message lookup, outbox insert, 302"},
}

func main() {
	in := flag.String("in", "-", "go test -bench output")
	md := flag.String("md", "BENCHMARKS.md", "markdown report to write")
	js := flag.String("json", "bench/results.json", "JSON figures to write")
	flag.Parse()
	if err := run(*in, *md, *js); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(in, mdPath, jsonPath string) error {
	var r io.Reader = os.Stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	results, cpu, err := parse(r)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("no benchmark results in %s", in)
	}
	figs, targets := figuresFrom(results)
	b, err := json.MarshalIndent(figs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(mdPath, []byte(markdown(results, figs, targets, cpu)), 0o644)
}

func parse(r io.Reader) ([]result, string, error) {
	var (
		out      []result
		pkg, cpu string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = strings.TrimSpace(c)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || len(fields)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue // a benchmark's own log line
		}
		res := result{pkg: pkg, name: trimCPU(fields[0]), metrics: map[string]float64{}}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			res.metrics[fields[i+1]] = v
			res.units = append(res.units, fields[i+1])
		}
		out = append(out, res)
	}
	return out, cpu, sc.Err()
}

// trimCPU drops the -N GOMAXPROCS suffix go test adds when it is not 1.
func trimCPU(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

func command(pkg, bench string) string {
	rel := "./" + strings.TrimPrefix(strings.TrimPrefix(pkg, "github.com/tailor-email/tailor"), "/")
	return fmt.Sprintf("make bench  # go test -run '^$' -bench '^%s$' -benchmem -cpu 1 %s", bench, rel)
}

func figuresFrom(results []result) ([]Figure, map[string]string) {
	var figs []Figure
	targets := map[string]string{}
	for _, nf := range namedFigures {
		for _, r := range results {
			if r.name != nf.bench {
				continue
			}
			if v, ok := r.metrics[nf.unit]; ok {
				figs = append(figs, Figure{Name: nf.name, Value: round(nf.convert(v)), Unit: nf.out, Command: command(r.pkg, r.name)})
				targets[nf.name] = nf.target
			}
		}
	}
	return figs, targets
}

func round(v float64) float64 {
	if v >= 1000 {
		return float64(int64(v + 0.5))
	}
	return float64(int64(v*100+0.5)) / 100
}

func markdown(results []result, figs []Figure, targets map[string]string, cpu string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` on %s (%s/%s, %d cores%s). Go benchmarks run with `-cpu 1`;\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuSuffix(cpu))
	b.WriteString("end-to-end harnesses run against the local stack (Postgres 15, kinesalite, dynalite), whose\n")
	b.WriteString("emulators bound those figures. Machine-readable copy: `bench/results.json`.\n\n")
	b.WriteString("## Figures the issues ask for\n\n| figure | value | unit | target |\n| --- | ---: | --- | --- |\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Name, format(f.Value), f.Unit, targets[f.Name])
	}
	b.WriteString("\n## Every benchmark\n\n| package | benchmark | results |\n| --- | --- | --- |\n")
	for _, r := range results {
		var parts []string
		for _, u := range r.units {
			parts = append(parts, format(r.metrics[u])+" "+u)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.TrimPrefix(r.pkg, "github.com/tailor-email/tailor/"), r.name, strings.Join(parts, ", "))
	}
	return b.String()
}

func cpuSuffix(cpu string) string {
	if cpu == "" {
		return ""
	}
	return ", " + cpu
}

func format(v float64) string {
	if v >= 1000 {
		s := strconv.FormatInt(int64(v+0.5), 10)
		var out []byte
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				out = append(out, ' ')
			}
			out = append(out, byte(c))
		}
		return string(out)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
