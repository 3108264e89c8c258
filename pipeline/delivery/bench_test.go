package delivery_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

// benchBodies are an ~11 KB message's parts (8 KB of HTML, 3 KB of text), shared by every
// message so that the in-memory source itself holds almost nothing.
var benchHTML, benchText = func() (string, string) {
	var h, t strings.Builder
	h.WriteString("<!DOCTYPE html><html><body style=\"margin:0\"><table role=\"presentation\" width=\"600\">")
	for i := 0; h.Len() < 8<<10; i++ {
		fmt.Fprintf(&h, "<tr><td style=\"padding:8px\"><a href=\"https://shop.example/p/%d?utm_source=tailor\">Produit n°%d — 19,99 €</a></td></tr>\n", i, i)
	}
	h.WriteString("</table></body></html>\n")
	for i := 0; t.Len() < 3<<10; i++ {
		fmt.Fprintf(&t, "- Produit n°%d (19,99 €): https://shop.example/p/%d\n", i, i)
	}
	return h.String(), t.String()
}()

var benchHeaders = map[string]string{"List-Unsubscribe": "<https://tailor.example/u/tok>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

// countingSource hands out n generated messages once each and counts their outcomes, holding
// a bit per message: unlike memSource, it adds almost nothing to the heap the benchmark
// measures.
type countingSource struct {
	gen       func(id int64) delivery.Message
	n         int64
	next      atomic.Int64
	acked     []atomic.Uint64 // a bit per message: acked
	sent, bad atomic.Int64
	left      atomic.Int64
	done      chan struct{}
}

func newCountingSource(n int, gen func(int64) delivery.Message) *countingSource {
	s := &countingSource{gen: gen, n: int64(n), acked: make([]atomic.Uint64, n/64+1), done: make(chan struct{})}
	s.left.Store(int64(n))
	return s
}

func (s *countingSource) Claim(_ context.Context, limit int, _ time.Duration) ([]delivery.Message, error) {
	var out []delivery.Message
	for range limit {
		id := s.next.Add(1)
		if id > s.n {
			return out, nil
		}
		out = append(out, s.gen(id))
	}
	return out, nil
}

func (s *countingSource) Ack(_ context.Context, outcomes []delivery.Outcome) error {
	for _, o := range outcomes {
		bit := uint64(1) << (o.MessageID % 64)
		if s.acked[o.MessageID/64].Or(bit)&bit != 0 || o.Status != delivery.StatusSent {
			s.bad.Add(1)
			continue
		}
		s.sent.Add(1)
		if s.left.Add(-1) == 0 {
			close(s.done)
		}
	}
	return nil
}

// BenchmarkRelay_Sink measures the relay alone: an in-memory Source of 100 000 messages of
// ~11 KB (RELAY_BENCH_MESSAGES), built as MIME and delivered over 16 pooled SMTP connections
// to the in-repo sink on 127.0.0.1, which runs in a child process (this test binary again)
// and only counts, so that it neither shares the relay's GOMAXPROCS nor its heap.
//
//   - msgs/s: messages accepted by the sink per second, from Start to the last ack;
//   - heap_peak_mb: the peak of the relay process's live Go heap objects (sampled every
//     10 ms through runtime/metrics).
//
// Run it with: go test ./pipeline/delivery -run '^$' -bench '^BenchmarkRelay_Sink$' -benchtime 1x
func BenchmarkRelay_Sink(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("RELAY_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	const concurrency = 16
	sink := startChildSink(b)

	var msgsPerSec, peakMB float64
	for b.Loop() {
		before := sink.accepted(b)
		sender, err := delivery.NewSMTPSender(delivery.SMTPConfig{URL: sink.url, MaxConns: concurrency})
		require.NoError(b, err)
		source := newCountingSource(n, func(id int64) delivery.Message {
			return delivery.Message{ID: id, CampaignID: 1, Email: "r" + strconv.FormatInt(id, 10) + "@example.com", Name: "Zoë Martin",
				Subject: "Zoë, nos nouveautés pour toi", Preheader: "Jusqu'à -30 % ce week-end", HTML: benchHTML, Text: benchText,
				Headers: benchHeaders}
		})
		r, err := delivery.NewRelay(delivery.RelayConfig{Source: source, Sender: sender, MIME: newBuilder(b), Concurrency: concurrency,
			ClaimBatch: 200, PollInterval: time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(b, err)

		runtime.GC()
		stopSampling, peak := sampleHeap()
		start := time.Now()
		require.NoError(b, r.Start(context.Background()))
		select {
		case <-source.done:
		case <-time.After(30 * time.Minute):
			b.Fatalf("%d of %d messages sent, %d other outcomes", source.sent.Load(), n, source.bad.Load())
		}
		elapsed := time.Since(start)
		stopSampling()
		require.NoError(b, r.Stop(context.Background()))
		require.NoError(b, sender.Close())

		require.Equal(b, int64(n), source.sent.Load(), "every message sent, once")
		require.Zero(b, source.bad.Load(), "no other outcome, no second one")
		require.Equal(b, int64(n), sink.accepted(b)-before)
		msgsPerSec = float64(n) / elapsed.Seconds()
		peakMB = float64(peak.Load()) / (1 << 20)
	}
	b.ReportMetric(msgsPerSec, "msgs/s")
	b.ReportMetric(peakMB, "heap_peak_mb")
	b.ReportMetric(0, "ns/op")
}

// sampleHeap samples the heap's live objects every 10 ms until stop is called.
func sampleHeap() (stop func(), peak *atomic.Uint64) {
	peak = &atomic.Uint64{}
	done, finished := make(chan struct{}), make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished; read() }, peak
}

// childSinkEnv makes the test binary run only an SMTP sink (see TestMain).
const childSinkEnv = "DELIVERY_TEST_CHILD_SINK"

// runChildSink serves a sink until stdin closes: it prints the sink's URL, then a line
// "accepted N" for every line read on stdin.
func runChildSink() int {
	sink, err := smtpsink.Start(smtpsink.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sink.Close()
	if path := os.Getenv("DELIVERY_TEST_CHILD_SINK_CPUPROFILE"); path != "" {
		// Where the sink's time goes (go tool pprof delivery.test PATH).
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println(sink.URL())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println("accepted", sink.Stats().Accepted)
	}
	return 0
}

type childSink struct {
	url string
	in  io.Writer
	out *bufio.Scanner
}

// startChildSink runs the sink in a child process until the benchmark ends.
func startChildSink(b *testing.B) *childSink {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childSinkEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(b, err)
	out, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		in.Close()
		require.NoError(b, cmd.Wait())
	})
	s := &childSink{in: in, out: bufio.NewScanner(out)}
	require.True(b, s.out.Scan(), "the child sink says its URL")
	s.url = s.out.Text()
	require.True(b, strings.HasPrefix(s.url, "smtp://127.0.0.1:"), s.url)
	return s
}

func (s *childSink) accepted(b *testing.B) int64 {
	b.Helper()
	_, err := fmt.Fprintln(s.in)
	require.NoError(b, err)
	require.True(b, s.out.Scan())
	n, err := strconv.ParseInt(strings.TrimPrefix(s.out.Text(), "accepted "), 10, 64)
	require.NoError(b, err)
	return n
}
