package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

// Body retention defaults.
const (
	// BodyRetentionDefault is how long a rendered body is kept after its message's final ack.
	BodyRetentionDefault = 7 * 24 * time.Hour
	// RetentionIntervalDefault is how often the retention job runs.
	RetentionIntervalDefault = 10 * time.Minute
	// retentionBatch is how many bodies one statement deletes.
	retentionBatch = 1000
	// retentionSlice bounds one run; the next run goes on.
	retentionSlice = 5 * time.Second
	// QueueMaintenance runs housekeeping jobs (body retention), one at a time.
	QueueMaintenance = "maintenance"
)

// RetentionArgs is the periodic job that deletes the rendered bodies (HTML and text) of
// messages whose final ack is older than Config.BodyRetention; the messages' metadata and
// body_sha256 stay. A run deletes in batches until nothing is due or its time slice ends.
type RetentionArgs struct{}

// Kind implements river.JobArgs.
func (RetentionArgs) Kind() string { return "delivery.retention" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (RetentionArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueMaintenance} }

type retentionWorker struct {
	river.WorkerDefaults[RetentionArgs]
	w *campaignWorkers
}

func (rw *retentionWorker) Work(ctx context.Context, _ *river.Job[RetentionArgs]) error {
	_, err := DeleteExpiredBodies(ctx, rw.w.cfg, retentionSlice)
	return err
}

// DeleteExpiredBodies deletes bodies due under cfg.BodyRetention at cfg.Now, in batches, for at
// most slice, and returns how many it deleted. A negative BodyRetention keeps every body.
func DeleteExpiredBodies(ctx context.Context, cfg Config, slice time.Duration) (int64, error) {
	cfg = cfg.withDefaults()
	if cfg.BodyRetention < 0 {
		return 0, nil
	}
	deadline := time.Now().Add(slice)
	var total int64
	for {
		now := cfg.Now()
		n, err := delivery.DeleteBodies(ctx, cfg.Pool, now.Add(-cfg.BodyRetention), now, retentionBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("body retention: %w", err)
		}
		if n < retentionBatch || time.Now().After(deadline) {
			if total > 0 {
				cfg.Logger.Info("body retention: deleted rendered bodies", "messages", total, "acked_before", now.Add(-cfg.BodyRetention))
			}
			return total, nil
		}
	}
}
