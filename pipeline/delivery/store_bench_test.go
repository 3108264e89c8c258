package delivery_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/delivery"
)

// BenchmarkStore_ClaimAck measures the claim / ack store against the local stack's Postgres:
// 4 concurrent senders claim batches of 100 from 20 000 ready messages (CLAIM_BENCH_MESSAGES)
// and ack each batch as sent, each ack putting its email_sent events in the outbox. msgs/s is
// messages claimed and acked per second until none is left.
//
// Run it with: go test ./pipeline/delivery -run '^$' -bench '^BenchmarkStore_ClaimAck$' -benchtime 1x
func BenchmarkStore_ClaimAck(b *testing.B) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("CLAIM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	const senders, batch = 4, 100
	var perSec float64
	for b.Loop() {
		b.StopTimer()
		e := newStoreEnv(b)
		camp := e.campaign(b, jobs.StatusRendered, "")
		e.render(b, camp, "c", n, e.clock.Now().Add(-time.Minute))
		_, err := e.Pool.Exec(b.Context(), `VACUUM ANALYZE rendered_messages`)
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		done := 0
		for range senders {
			wg.Go(func() {
				for {
					msgs, err := e.store.Claim(context.Background(), delivery.ClaimRequest{Limit: batch, Lease: time.Minute})
					if err != nil {
						b.Error(err)
						return
					}
					if len(msgs) == 0 {
						return
					}
					if _, err := e.store.Ack(context.Background(), sentOutcomes(msgs)); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					done += len(msgs)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		require.Equal(b, n, done)
		perSec = float64(n) / elapsed.Seconds()
	}
	b.ReportMetric(perSec, "msgs/s")
	b.ReportMetric(0, "ns/op")
}
