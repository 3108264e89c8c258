package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/stream"
)

// Outbox defaults.
const (
	// OutboxBatchDefault is how many events one publish takes (one PutRecords call).
	OutboxBatchDefault = 500
	// OutboxIntervalDefault is how long an idle publisher waits before looking again.
	OutboxIntervalDefault = 250 * time.Millisecond
	// OutboxRetryMaxDefault caps the wait after the stream failed.
	OutboxRetryMaxDefault = 10 * time.Second
	// outboxPublishTimeout bounds one batch's publish (the producer retries inside it).
	outboxPublishTimeout = time.Minute
	// outboxRollbackTimeout bounds the rollback of a publish that failed or was cut short.
	outboxRollbackTimeout = 5 * time.Second
)

// OutboxConfig configures an Outbox. Zero values mean defaults.
type OutboxConfig struct {
	// DB is the Postgres pool holding delivery_outbox. Required.
	DB *pgxpool.Pool
	// Stream takes the events (a stream.Producer). Required.
	Stream events.RecordSender
	// Batch is how many events one publish takes; default OutboxBatchDefault (500), at most
	// stream.PutRecordsMaxRecords.
	Batch int
	// Interval is the idle wait; default OutboxIntervalDefault (250 ms).
	Interval time.Duration
	// RetryMax caps the backoff after a failed publish; default OutboxRetryMaxDefault (10 s).
	RetryMax time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Outbox publishes the events that acks and tracking put in delivery_outbox to the event
// stream, oldest first, and deletes each once the stream has it. It takes a batch with FOR
// UPDATE SKIP LOCKED inside a transaction that lasts the publish, so any number of publishers
// (every tailor serve and tailor relay runs one) share the work. Delivery is at least once: a
// publisher that dies after Kinesis took a batch and before its delete commits publishes it
// again, and the event ids (one per hand-out and outcome) make that a duplicate downstream.
type Outbox struct {
	cfg      OutboxConfig
	cancel   context.CancelFunc // cuts the batch in progress short
	stop     chan struct{}      // closed by Stop: no batch after the one in progress
	stopOnce sync.Once
	stopped  chan struct{}
}

// NewOutbox checks cfg and returns a publisher to Start.
func NewOutbox(cfg OutboxConfig) (*Outbox, error) {
	cfg.Batch = cmp.Or(cfg.Batch, OutboxBatchDefault)
	cfg.Interval = cmp.Or(cfg.Interval, OutboxIntervalDefault)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, OutboxRetryMaxDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.DB == nil || cfg.Stream == nil:
		return nil, errors.New("delivery: OutboxConfig.DB and OutboxConfig.Stream are required")
	case cfg.Batch < 1 || cfg.Batch > stream.PutRecordsMaxRecords:
		return nil, fmt.Errorf("delivery: OutboxConfig.Batch %d: want 1 to %d", cfg.Batch, stream.PutRecordsMaxRecords)
	case cfg.Interval < 0 || cfg.RetryMax < 0:
		return nil, errors.New("delivery: OutboxConfig: durations must not be negative")
	}
	return &Outbox{cfg: cfg, stop: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Start publishes in the background until Stop or ctx's end.
func (o *Outbox) Start(ctx context.Context) error {
	if o.cancel != nil {
		return errors.New("delivery: Outbox started twice")
	}
	ctx, o.cancel = context.WithCancel(ctx)
	go func() {
		defer close(o.stopped)
		o.run(ctx)
	}()
	return nil
}

// Stop ends publishing after the batch in progress, which it waits for; when ctx ends first,
// that batch's publish is cut short and its events stay in the outbox for the next
// publisher. (Cancelling at once, as Stop did, rolled back a batch that was on its way, and a
// Flush just before it found nothing to take: the publisher held the rows.)
func (o *Outbox) Stop(ctx context.Context) error {
	if o.cancel == nil {
		return errors.New("delivery: Outbox.Stop before Start")
	}
	o.stopOnce.Do(func() { close(o.stop) })
	select {
	case <-o.stopped:
		o.cancel()
		return nil
	case <-ctx.Done():
		o.cancel()
		<-o.stopped // a cancelled publish returns at once
		return ctx.Err()
	}
}

// Stopped is closed once the publisher stopped.
func (o *Outbox) Stopped() <-chan struct{} { return o.stopped }

func (o *Outbox) run(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil && !o.stopping() {
		n, err := o.PublishOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			backoff = min(max(2*backoff, o.cfg.Interval), o.cfg.RetryMax)
			o.cfg.Logger.Warn("delivery outbox: publish failed, trying again", "err", err, "in", backoff)
			if !o.sleep(ctx, backoff) {
				return
			}
		case n < o.cfg.Batch:
			backoff = 0
			if !o.sleep(ctx, o.cfg.Interval) {
				return
			}
		default:
			backoff = 0 // a full batch: there may be more at once
		}
	}
}

func (o *Outbox) stopping() bool {
	select {
	case <-o.stop:
		return true
	default:
		return false
	}
}

// sleep waits d; false when ctx ended or Stop was called meanwhile.
func (o *Outbox) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-o.stop:
		return false
	}
}

// PublishOnce publishes one batch of the oldest pending events and returns how many the stream
// took. Events the stream refused stay for the next call (and count as an error).
func (o *Outbox) PublishOnce(ctx context.Context) (int, error) {
	published := 0
	err := inTx(ctx, o.cfg.DB, func(tx pgx.Tx) error {
		published = 0
		rows, err := tx.Query(ctx, queries.Get("outbox-take"), o.cfg.Batch)
		if err != nil {
			return err
		}
		var ids []int64
		var records []stream.Record
		var id int64
		var r stream.Record
		if _, err := pgx.ForEachRow(rows, []any{&id, &r.PartitionKey, &r.Data}, func() error {
			ids, records = append(ids, id), append(records, r)
			r = stream.Record{}
			return nil
		}); err != nil {
			return err
		}
		if len(records) == 0 {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, outboxPublishTimeout)
		results, err := o.cfg.Stream.Send(pctx, records)
		cancel()
		if err != nil {
			return fmt.Errorf("publish: %w", err) // rolled back: every event stays
		}
		done := make([]int64, 0, len(ids))
		var firstErr error
		for i, rerr := range results {
			if rerr == nil {
				done = append(done, ids[i])
			} else {
				firstErr = cmp.Or(firstErr, rerr)
			}
		}
		if _, err := tx.Exec(ctx, queries.Get("outbox-delete"), done); err != nil {
			return err
		}
		published = len(done)
		if failed := len(ids) - len(done); failed > 0 {
			outboxFailed.Add(float64(failed))
			// Commit what was published; the rest is tried again.
			o.cfg.Logger.Warn("delivery outbox: the stream refused events", "failed", failed, "err", firstErr)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delivery outbox: %w", err)
	}
	outboxPublished.Add(float64(published))
	return published, nil
}

// inTx runs fn in a transaction of db like pgx.BeginFunc, except that the rollback after a
// failure does not use ctx: when ctx was cancelled (Stop cutting a publish short), the events
// fn locked are free for the next publisher by the time inTx returns. pgx.BeginFunc's rollback
// with a cancelled ctx only closes the connection, and Postgres releases the locks once it
// notices, a moment later, so a Flush right after skipped them and found nothing.
func inTx(ctx context.Context, db *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxRollbackTimeout)
		defer cancel()
		_ = tx.Rollback(rctx) // after a commit: pgx.ErrTxClosed
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Pending counts the events waiting in the outbox.
func Pending(ctx context.Context, q Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, queries.Get("outbox-pending")).Scan(&n); err != nil {
		return 0, fmt.Errorf("delivery outbox: %w", err)
	}
	return n, nil
}

// BatchSender is what EnqueueEvents writes through: a pgx.Tx, a *pgxpool.Pool or a *pgx.Conn.
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// EnqueueEvents puts evs in delivery_outbox through q, in q's transaction when q is one, for
// an Outbox to publish. Tracking (opens and clicks) and acks write their events this way, so an
// answered request never loses its event and never waits for Kinesis.
func EnqueueEvents(ctx context.Context, q BatchSender, evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	if err := queueEvents(batch, evs); err != nil {
		return err
	}
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("delivery: outbox insert: %w", err)
	}
	return nil
}

// Flush publishes until the outbox is empty (or ctx ends, or the stream fails): a process
// that acked messages calls it before it exits, so its last events do not wait for the next
// publisher. Safe alongside a running publisher.
func (o *Outbox) Flush(ctx context.Context) error {
	for {
		n, err := o.PublishOnce(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
