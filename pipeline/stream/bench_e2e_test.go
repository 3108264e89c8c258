package stream_test

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/metrics"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// latencyLog keeps, per event id, when it was sent and when it was first durable in a profile.
type latencyLog struct {
	mu        sync.Mutex
	sent      map[string]time.Time
	latencies []time.Duration
	done      map[string]bool
}

func (l *latencyLog) hook(b events.AppliedBatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range b.Events {
		if l.done[e.EventID] {
			continue
		}
		l.done[e.EventID] = true
		if s, ok := l.sent[e.EventID]; ok {
			l.latencies = append(l.latencies, b.Applied.Sub(s))
		}
	}
}

func (l *latencyLog) markSent(evs []events.Event, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range evs {
		l.sent[e.EventID] = at
	}
}

func (l *latencyLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

// profileWritesOK reads tailor_profile_event_writes_total{outcome="ok"}.
func profileWritesOK(tb testing.TB) float64 {
	reg := prometheus.NewRegistry()
	require.NoError(tb, metrics.Register(reg, profile.MetricsCollectors()...))
	families, err := reg.Gather()
	require.NoError(tb, err)
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if fam.GetName() == "tailor_profile_event_writes_total" && l.GetName() == "outcome" && l.GetValue() == "ok" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
}

// BenchmarkStreamE2E measures events through the emulators (kinesalite + dynalite): producer ->
// Kinesis (4 shards) -> consumer -> coalesced profile writes. Phase one sends
// TAILOR_BENCH_EVENTS (default 100 000) events over 500 customers as fast as possible and
// reports the throughput; phase two sends TAILOR_BENCH_LATENCY_EVENTS (default 100 000) at
// TAILOR_BENCH_RATE events/s (default 1 000) and reports the event-to-profile latency (from
// the PutRecords call to the profile write being durable). Run it once: -benchtime=1x.
func BenchmarkStreamE2E(b *testing.B) {
	n := envInt("TAILOR_BENCH_EVENTS", 100_000)
	latN := envInt("TAILOR_BENCH_LATENCY_EVENTS", 100_000)
	rate := envInt("TAILOR_BENCH_RATE", 1000)
	e := eventpath.New(b, 4)
	log := &latencyLog{sent: map[string]time.Time{}, done: map[string]bool{}}
	e.StartConsumer(b, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{PollInterval: stream.PollIntervalDefault}, AfterApply: log.hook})
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Now().UTC()
	all := profiletest.GenEvents(r, n+latN, 500, now)
	for i := range all {
		all[i].Timestamp = now.Add(-time.Duration(r.IntN(3600)) * time.Second).Truncate(time.Millisecond)
	}
	bulk, paced := all[:n], all[n:]

	for b.Loop() {
		// Phase one: throughput.
		start := time.Now()
		benchStart := start
		writesBefore := profileWritesOK(b)
		var wg sync.WaitGroup
		for part := range slices.Chunk(bulk, (len(bulk)+3)/4) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for chunk := range slices.Chunk(part, stream.PutRecordsMaxRecords) {
					log.markSent(chunk, time.Now())
					e.Send(b, chunk)
				}
			}()
		}
		wg.Wait()
		eventpath.Eventually(b, 10*time.Minute, func() (bool, string) { return log.count() >= n, strconv.Itoa(log.count()) })
		throughput := float64(n) / time.Since(start).Seconds()
		log.mu.Lock()
		log.latencies = log.latencies[:0]
		log.mu.Unlock()

		// Phase two: latency at a steady rate, sent every 20 ms.
		const tick = 20 * time.Millisecond
		perTick := max(rate*int(tick)/int(time.Second), 1)
		ticker := time.NewTicker(tick)
		for chunk := range slices.Chunk(paced, perTick) {
			<-ticker.C
			log.markSent(chunk, time.Now())
			e.Send(b, chunk)
		}
		ticker.Stop()
		eventpath.Eventually(b, 5*time.Minute, func() (bool, string) { return log.count() >= n+latN, strconv.Itoa(log.count()) })
		log.mu.Lock()
		lat := slices.Clone(log.latencies)
		log.mu.Unlock()
		slices.Sort(lat)
		b.ReportMetric(throughput, "events/s")
		b.ReportMetric((profileWritesOK(b)-writesBefore)/time.Since(benchStart).Seconds(), "profile_writes/s")
		b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99_ms")
	}
}
