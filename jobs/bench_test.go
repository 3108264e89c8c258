package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/jobs"
)

// BenchmarkRiverInsertMany measures the fan-out's enqueue: InsertManyTx of unique render
// batches (100 recipients each) in one transaction, as the start job does per scan page.
func BenchmarkRiverInsertMany(b *testing.B) {
	env := setup(b).env
	rc, err := jobs.NewInsertClient(env.Pool)
	require.NoError(b, err)
	ctx := context.Background()
	const perTx = 100
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = "customer-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		params := make([]river.InsertManyParams, perTx)
		for j := range params {
			params[j] = river.InsertManyParams{Args: jobs.RenderBatchArgs{CampaignID: int64(i), CustomerIDs: ids, SendAt: time.Unix(int64(j), 0)}}
		}
		require.NoError(b, pgx.BeginFunc(ctx, env.Pool, func(tx pgx.Tx) error {
			_, err := rc.InsertManyTx(ctx, tx, params)
			return err
		}))
	}
	b.ReportMetric(float64(b.N*perTx)/time.Since(start).Seconds(), "jobs/s")
}
