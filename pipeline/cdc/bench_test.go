package cdc_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/cdc"
)

// BenchmarkCDC measures CDC against the local stack (Postgres + dynalite):
//
//   - rows/s: streaming throughput, draining a backlog of 20 000 row changes (inserts and
//     updates of customers, 10 per transaction) written while CDC was stopped;
//   - p50_ms, p99_ms: commit-to-profile latency (from the transaction's commit timestamp in
//     the WAL to the DynamoDB write being durable) under 1 000 single-row transactions per second
//     for 10 seconds;
//   - store_writes/s: for scale, the rate at which the store alone takes customers-shaped writes
//     with the same concurrency (on the local stack dynalite, one Node process, is the ceiling).
//
// Run it with: go test ./pipeline/cdc -run '^$' -bench '^BenchmarkCDC$' -benchtime 1x
func BenchmarkCDC(b *testing.B) {
	const backlog, rate, seconds = 20_000, 1000, 10
	f := setup(b)
	ctx := context.Background()
	f.cfg.StandbyTimeout = 5 * time.Second
	if w, err := strconv.Atoi(os.Getenv("CDC_BENCH_WORKERS")); err == nil { // for tuning
		f.cfg.Workers = w
	}

	// For scale: how fast the store takes writes shaped like a customers row, with CDC's
	// concurrency and nothing else (dynalite is the ceiling on the local stack).
	ceiling := storeWriteRate(b, f, 3000)

	// Create the slot, then stop so that the backlog piles up in the WAL.
	c, stop := f.start(b, f.cfg)
	eventually(b, time.Minute, func() error {
		if c.Confirmed() == 0 {
			return fmt.Errorf("not streaming")
		}
		return nil
	})
	stop()
	for i := 0; i < backlog; i += 10 {
		batch := &pgx.Batch{}
		for j := i; j < i+10; j++ {
			id := "t" + strconv.Itoa(j%(backlog/2))
			batch.Queue(`INSERT INTO customers (id, email, first_name, attributes) VALUES ($1, $2, $3, '{"plan":"pro"}')
				ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name`, id, id+"@example.com", "N"+strconv.Itoa(j))
		}
		require.NoError(b, pgx.BeginFunc(ctx, f.env.Pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, batch).Close() }))
	}

	b.ResetTimer()
	began := time.Now()
	c, stop = f.start(b, f.cfg)
	eventually(b, 5*time.Minute, func() error {
		if n := c.Applied(); n < backlog {
			return fmt.Errorf("%d of %d applied", n, backlog)
		}
		return nil
	})
	throughput := float64(backlog) / time.Since(began).Seconds()
	stop()

	// Latency at a steady 1 000 changes/s.
	var mu sync.Mutex
	var lat []float64
	lcfg := f.cfg
	lcfg.OnApply = func(_ int, commits []time.Time) {
		now := time.Now()
		mu.Lock()
		for _, t := range commits {
			lat = append(lat, float64(now.Sub(t).Microseconds())/1000)
		}
		mu.Unlock()
	}
	lc, _ := f.start(b, lcfg)
	eventually(b, time.Minute, func() error {
		if !lc.Active() || lc.Confirmed() == 0 {
			return fmt.Errorf("not streaming")
		}
		return nil
	})
	const producers = 8
	total := rate * seconds
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < total; i += producers {
				if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
					time.Sleep(d)
				}
				id := "l" + strconv.Itoa(i%2000)
				_, err := f.env.Pool.Exec(ctx, `INSERT INTO customers (id, email, first_name) VALUES ($1, $2, $3)
					ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name`, id, id+"@example.com", "L"+strconv.Itoa(i))
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(b, <-errs)
	produced := float64(total) / time.Since(start).Seconds()
	eventually(b, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(lat) < total {
			return fmt.Errorf("%d of %d latencies", len(lat), total)
		}
		return nil
	})
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)*50/100], lat[len(lat)*99/100]
	mu.Unlock()
	b.ReportMetric(throughput, "rows/s")
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(produced, "offered_changes/s")
	b.ReportMetric(ceiling, "store_writes/s")
	b.ReportMetric(0, "ns/op")
}

func storeWriteRate(b *testing.B, f *fixture, n int) float64 {
	ctx := context.Background()
	workers := cmp.Or(f.cfg.Workers, cdc.WorkersDefault)
	fields := map[string]any{"email": "x@example.com", "first_name": "F", "last_name": "L", "locale": "en", "timezone": "UTC",
		"country": "GB", "attributes": map[string]any{"plan": "pro"}, "created_at": "2026-01-01T00:00:00Z", "crm_updated_at": "2026-01-01T00:00:00Z"}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				_, err := f.store.ApplyCRM(ctx, "ceiling"+strconv.Itoa(i), 1, fields, nil)
				require.NoError(b, err)
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkCDC_BigTransaction measures one transaction that updates 200 000 customers
// (CDC_BENCH_BIG_ROWS) with ~2 KB of attributes each, streamed by a real `tailor cdc` process
// built from cmd/tailor:
//
//   - peak_rss_mb: the process's peak resident set (VmHWM in /proc/<pid>/status) once every
//     row reached the profiles;
//   - rows/s: rows of the transaction applied per second, from the process's start.
//
// The slot is created (and its backfill recorded as done) before the rows' transaction, so the
// process streams that one transaction and nothing else.
//
// Run it with: go test ./pipeline/cdc -run '^$' -bench '^BenchmarkCDC_BigTransaction$' -benchtime 1x
func BenchmarkCDC_BigTransaction(b *testing.B) {
	rows := 200_000
	if n, err := strconv.Atoi(os.Getenv("CDC_BENCH_BIG_ROWS")); err == nil {
		rows = n
	}
	f := setup(b)
	ctx := context.Background()
	bin := buildTailor(b)
	f.dropProfilesAtCleanup(b)

	f.execTB(b, `INSERT INTO customers (id, email) SELECT 'big' || g, 'big' || g || '@example.com' FROM generate_series(1, $1) g`, rows)
	f.createSlotWithoutBackfill(b)
	// One transaction: every customer gets ~2 KB of attributes (40 keys of 32 hex digits).
	f.execTB(b, `UPDATE customers SET updated_at = now(), attributes =
		(SELECT jsonb_object_agg('k' || i, md5(id || i)) FROM generate_series(1, 40) i)`)

	b.ResetTimer()
	p := f.startTailorCDC(b, bin)
	eventually(b, time.Hour, func() error {
		n, err := p.rowsApplied()
		if err == nil && n < float64(rows) {
			err = fmt.Errorf("%.0f of %d rows applied", n, rows)
		}
		return err
	})
	elapsed := time.Since(p.started)
	peak, err := p.peakRSS()
	require.NoError(b, err)
	b.StopTimer()
	p.stop(b)

	// Spot checks: the first, middle and last rows carry their new attributes.
	for _, i := range []int{1, rows / 2, rows} {
		id := "big" + strconv.Itoa(i)
		var want string
		require.NoError(b, f.env.Pool.QueryRow(ctx, `SELECT attributes->>'k7' FROM customers WHERE id = $1`, id).Scan(&want))
		p, err := f.profile(id)
		require.NoError(b, err)
		require.Equal(b, want, path(p, "attributes.k7"), id)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak_rss_mb")
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(0, "ns/op")
}
