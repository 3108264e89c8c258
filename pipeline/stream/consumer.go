package stream

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// Consumer defaults.
const (
	LeaseDurationDefault    = 10 * time.Second
	PollIntervalDefault     = 200 * time.Millisecond
	ReadIntervalDefault     = 200 * time.Millisecond
	BalanceIntervalMax      = 2 * time.Second
	DiscoverIntervalDefault = 5 * time.Second
	BatchLimitDefault       = 10000
	StartTrimHorizon        = "TRIM_HORIZON"
	StartLatest             = "LATEST"
)

// Batch is the records one GetRecords call returned for a shard, in sequence order.
type Batch struct {
	ShardID string
	Records []Record
}

// Processor handles the records of a shard. Process returns only when the batch's effects are
// durable: the consumer checkpoints after it. It must be idempotent, because a batch is
// redelivered after a crash or a lease steal, and it is called concurrently for different
// shards. An error stops the shard's worker; the lease is then retaken and the batch read again.
type Processor interface {
	Process(ctx context.Context, b Batch) error
}

// ConsumerConfig configures a Consumer. Zero values mean defaults.
type ConsumerConfig struct {
	// Stream is the Kinesis stream. Required.
	Stream string
	// LeaseTable is the DynamoDB table of shard leases and checkpoints. Required.
	LeaseTable string
	// Owner names this process in the lease table. Default: hostname-pid-random.
	Owner string
	// StartPosition is where a shard without a checkpoint starts: StartTrimHorizon (default) or
	// StartLatest. Child shards of a split or merge always start at their beginning.
	StartPosition string
	// LeaseDuration is how long a lease stays valid without renewal; a dead owner's leases move
	// to live owners after it. Renewal and balancing run every third of it (at most every 2s).
	// Default 10s.
	LeaseDuration time.Duration
	// ReadInterval is the least time between two GetRecords calls on one shard, so a shard
	// whose batches process quickly stays within Kinesis's five calls per second per shard
	// (shared by every consumer of the stream). Default 200ms.
	ReadInterval time.Duration
	// PollInterval is the wait after an empty GetRecords. Default 200ms (Kinesis allows five
	// GetRecords per shard per second).
	PollInterval time.Duration
	// DiscoverInterval is how often shards are listed (new shards after a split). Default 5s.
	DiscoverInterval time.Duration
	// BatchLimit is GetRecords' Limit. Default 10000 (the Kinesis maximum): a consumer that
	// falls behind reads bigger batches, which coalesce into fewer profile writes.
	BatchLimit int
	// Processor handles each batch of records. Required.
	Processor Processor
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		c.Owner = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b))
	}
	c.StartPosition = cmp.Or(c.StartPosition, StartTrimHorizon)
	c.LeaseDuration = cmp.Or(c.LeaseDuration, LeaseDurationDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.ReadInterval = cmp.Or(c.ReadInterval, ReadIntervalDefault)
	c.DiscoverInterval = cmp.Or(c.DiscoverInterval, DiscoverIntervalDefault)
	c.BatchLimit = cmp.Or(c.BatchLimit, BatchLimitDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ConsumerConfig) validate() error {
	switch {
	case c.Stream == "":
		return errors.New("consumer: Stream is required")
	case c.LeaseTable == "":
		return errors.New("consumer: LeaseTable is required")
	case c.Processor == nil:
		return errors.New("consumer: Processor is required")
	case c.StartPosition != StartTrimHorizon && c.StartPosition != StartLatest:
		return fmt.Errorf("consumer: StartPosition %q: use %s or %s", c.StartPosition, StartTrimHorizon, StartLatest)
	}
	return nil
}

// Consumer reads a Kinesis stream with shard leases, so many processes share the shards: each
// takes free or expired leases and, when the shards are unevenly spread, steals one at a time
// from the busiest owner. It reads a child shard only after all its parents are finished, so a
// customer's events (one partition key) are applied in stream order across a split or merge.
// It checkpoints a shard only after its batch is durable in the sink (at-least-once).
//
// When the retention period overtakes it, it does not stop: a checkpoint Kinesis no longer
// holds restarts the shard at TRIM_HORIZON, and a shard Kinesis has deleted (a closed parent
// whose records all expired) is marked finished so its children start. Both are logged as
// errors and counted in tailor_consumer_retention_gaps_total{reason}.
type Consumer struct {
	cfg     ConsumerConfig
	kinesis KinesisReader
	leases  *LeaseTable
	log     *slog.Logger
	ret     retentionCache

	stopOnce sync.Once
	stopping chan struct{} // closed by Stop: graceful handoff
	stopped  chan struct{} // closed when Run returns

	finishedCh chan struct{} // a shard was read to its end

	mu   sync.Mutex
	held map[string]*shardWorker
}

// NewConsumer returns a consumer reading through kc (a *kinesis.Client) with its leases in
// db; Run starts it.
func NewConsumer(kc KinesisReader, db *dynamodb.Client, cfg ConsumerConfig) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Consumer{
		cfg: cfg, kinesis: kc, leases: NewLeaseTable(db, cfg.LeaseTable), log: cfg.Logger.With("owner", cfg.Owner),
		stopping: make(chan struct{}), stopped: make(chan struct{}), finishedCh: make(chan struct{}, 1),
		held: map[string]*shardWorker{},
	}, nil
}

// Owner returns the name this consumer holds leases under.
func (c *Consumer) Owner() string { return c.cfg.Owner }

// Held returns the shard ids whose leases this consumer holds now.
func (c *Consumer) Held() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.held))
}

// Stop hands the leases over gracefully: each shard finishes its current batch and checkpoints,
// then the leases are released so other consumers take them at once. It returns when Run has
// returned, or with ctx's error (Run's context should then be cancelled).
func (c *Consumer) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stopping) })
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop consumer: %w", ctx.Err())
	}
}

// Stopped is closed when Run has returned.
func (c *Consumer) Stopped() <-chan struct{} { return c.stopped }

// Run consumes until ctx ends (a hard stop: leases are left to expire, as after a crash) or
// Stop is called (graceful handoff, Run returns nil). It creates the lease table if missing.
func (c *Consumer) Run(ctx context.Context) error {
	defer close(c.stopped)
	if err := c.leases.EnsureTable(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	workCtx, cancelWork := context.WithCancel(ctx)
	defer cancelWork()

	// Renew well within the lease duration; balance often enough that a released or expired
	// lease is picked up within a couple of seconds.
	tick := time.NewTicker(min(c.cfg.LeaseDuration/3, BalanceIntervalMax))
	defer tick.Stop()
	var shards []ktypes.Shard
	var lastDiscover time.Time
	for {
		if time.Since(lastDiscover) >= c.cfg.DiscoverInterval || shards == nil {
			s, err := c.discover(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				c.log.Warn("shard discovery failed", "err", err)
			} else {
				shards, lastDiscover = s, time.Now()
			}
		}
		c.renew(ctx)
		if err := c.balance(workCtx, &wg, shards); err != nil && ctx.Err() == nil {
			c.log.Warn("lease balancing failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.stopping:
			c.handoff(ctx)
			return nil
		case <-tick.C:
		case <-c.finishedCh:
		}
	}
}

// notifyFinished wakes the lease loop when a worker finished a shard, so its children are
// picked up without waiting for the next round.
func (c *Consumer) notifyFinished() {
	select {
	case c.finishedCh <- struct{}{}:
	default:
	}
}

// listShards lists every shard of the stream, open and closed (Kinesis lists a closed shard
// until its records are past the retention period).
func (c *Consumer) listShards(ctx context.Context) ([]ktypes.Shard, error) {
	var shards []ktypes.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(c.cfg.Stream)}
	for {
		out, err := c.kinesis.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list shards of %s: %w", c.cfg.Stream, err)
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// discover lists the stream's shards and creates a lease for each new one.
func (c *Consumer) discover(ctx context.Context) ([]ktypes.Shard, error) {
	shards, err := c.listShards(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range shards {
		var parents []string
		for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
			if p != nil {
				parents = append(parents, *p)
			}
		}
		if _, err := c.leases.Create(ctx, aws.ToString(s.ShardId), parents); err != nil {
			return nil, err
		}
	}
	return shards, nil
}

// workers returns the workers of the shards held now.
func (c *Consumer) workers() []*shardWorker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.held))
}

// renew extends every held lease; a lease that cannot be renewed is dropped and its worker
// stopped (another owner has taken it).
func (c *Consumer) renew(ctx context.Context) {
	workers := c.workers()
	for _, w := range workers {
		if err := w.renew(ctx, c.cfg.LeaseDuration); err != nil {
			if errors.Is(err, ErrLeaseLost) {
				c.log.Info("lease lost", "shard", w.shardID)
				w.cancel()
				continue
			}
			if ctx.Err() == nil {
				c.log.Warn("lease renewal failed", "shard", w.shardID, "err", err)
			}
		}
	}
}

// balance takes leases this owner should hold: free or expired ones first, then (one per round)
// a lease of the busiest owner when this one holds fewer than its fair share.
func (c *Consumer) balance(ctx context.Context, wg *sync.WaitGroup, shards []ktypes.Shard) error {
	select {
	case <-c.stopping:
		return nil
	default:
	}
	all, err := c.leases.List(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	byShard := make(map[string]Lease, len(all))
	for _, l := range all {
		byShard[l.ShardID] = l
	}
	listed := make(map[string]bool, len(shards))
	for _, s := range shards {
		listed[aws.ToString(s.ShardId)] = true
	}
	ready := func(l Lease) bool {
		if l.Finished() {
			return false
		}
		for _, p := range l.Parents {
			pl, ok := byShard[p]
			if ok && !pl.Finished() || !ok && listed[p] {
				return false
			}
		}
		return true
	}
	owners := map[string]int{c.cfg.Owner: 0}
	var available, free []Lease
	for _, l := range all {
		if !ready(l) {
			continue
		}
		available = append(available, l)
		if l.Held(now) {
			owners[l.Owner]++
		} else {
			free = append(free, l)
		}
	}
	c.mu.Lock()
	mine := len(c.held)
	c.mu.Unlock()
	leasesHeld.Set(float64(mine))
	target := (len(available) + len(owners) - 1) / len(owners)
	// Oldest shards first: parents before children, lower ids first.
	slices.SortFunc(free, func(a, b Lease) int { return cmp.Compare(a.ShardID, b.ShardID) })
	for _, l := range free {
		if mine >= target {
			break
		}
		if c.take(ctx, wg, l, now) {
			mine++
		}
	}
	if mine >= target || len(free) > 0 {
		return nil
	}
	// Steal one lease from the owner with the most, if it holds more than its share.
	victim, most := "", 0
	for o, n := range owners {
		if o != c.cfg.Owner && (n > most || n == most && o < victim) {
			victim, most = o, n
		}
	}
	if most <= target || most-mine < 2 {
		return nil
	}
	for _, l := range available {
		if l.Owner == victim && l.Held(now) {
			c.log.Info("stealing lease", "shard", l.ShardID, "from", victim)
			c.take(ctx, wg, l, now)
			break
		}
	}
	return nil
}

// take claims seen and starts its worker; false when another owner won the race.
func (c *Consumer) take(ctx context.Context, wg *sync.WaitGroup, seen Lease, now time.Time) bool {
	c.mu.Lock()
	_, already := c.held[seen.ShardID]
	c.mu.Unlock()
	if already {
		return false
	}
	l, err := c.leases.Take(ctx, seen, c.cfg.Owner, c.cfg.LeaseDuration, now)
	if err != nil {
		if !errors.Is(err, ErrLeaseLost) && ctx.Err() == nil {
			c.log.Warn("take lease failed", "shard", seen.ShardID, "err", err)
		}
		return false
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &shardWorker{c: c, shardID: l.ShardID, lease: l, cancel: cancel, done: make(chan struct{})}
	w.behindMs.Store(-1)
	c.mu.Lock()
	c.held[l.ShardID] = w
	c.mu.Unlock()
	c.log.Info("lease taken", "shard", l.ShardID, "checkpoint", l.Checkpoint)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(w.done)
		defer func() {
			select {
			case <-c.stopping:
				// A graceful stop: the worker stays in held so that handoff, which may look
				// only after the workers returned, releases its lease (removed here, the lease
				// would stay unread until it expired).
			default:
				c.mu.Lock()
				delete(c.held, w.shardID)
				c.mu.Unlock()
			}
			iteratorAge.DeleteLabelValues(c.cfg.Stream, w.shardID)
			cancel()
		}()
		err := w.run(wctx)
		switch {
		case err == nil, errors.Is(err, ErrLeaseLost), ctx.Err() != nil:
		default:
			c.log.Error("shard worker failed", "shard", w.shardID, "err", err)
		}
	}()
	return true
}

// handoff lets every worker finish its batch, then releases the leases.
func (c *Consumer) handoff(ctx context.Context) {
	workers := c.workers()
	for _, w := range workers {
		select {
		case <-w.done:
		case <-ctx.Done():
			return
		}
		l := w.current()
		if !l.Finished() {
			if err := c.leases.Release(ctx, l); err != nil && !errors.Is(err, ErrLeaseLost) {
				c.log.Warn("release lease failed", "shard", w.shardID, "err", err)
			}
		}
		c.mu.Lock()
		delete(c.held, w.shardID)
		c.mu.Unlock()
	}
}

// shardWorker reads one leased shard.
type shardWorker struct {
	c       *Consumer
	shardID string
	cancel  context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex // serialises lease writes (renew vs checkpoint)
	lease Lease
	// behindMs is the reader's last MillisBehindLatest (-1 before the first read), reported in
	// the lease at each renewal.
	behindMs atomic.Int64
}

func (w *shardWorker) current() Lease {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lease
}

func (w *shardWorker) renew(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	held := w.lease
	if ms := w.behindMs.Load(); ms >= 0 {
		held.IteratorAgeMillis, held.LagReportedAt = ms, now.UnixMilli()
	}
	l, err := w.c.leases.Renew(ctx, held, d, now)
	if err != nil {
		return err
	}
	w.lease = l
	return nil
}

func (w *shardWorker) checkpoint(ctx context.Context, seq string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	l, err := w.c.leases.Checkpoint(ctx, w.lease, seq)
	if err != nil {
		return err
	}
	w.lease = l
	return nil
}

// run reads the shard until it ends, the lease is lost, ctx ends or the consumer stops.
func (w *shardWorker) run(ctx context.Context) error {
	r := newShardReader(w.c, w.current())
	r.behindMs = &w.behindMs
	for {
		select {
		case <-w.c.stopping:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		records, end, err := r.next(ctx)
		if err != nil {
			return err
		}
		if len(records) > 0 {
			if err := w.process(ctx, records); err != nil {
				return err
			}
		}
		if end {
			// The shard is closed and read to its end, or gone from the stream: its
			// children may start.
			if err := w.checkpoint(ctx, CheckpointShardEnd); err != nil {
				return err
			}
			w.c.log.Info("shard finished", "shard", w.shardID)
			w.c.notifyFinished()
			return nil
		}
		if len(records) == 0 {
			select {
			case <-w.c.stopping:
				return nil
			default:
			}
			if err := ctxtime.Sleep(ctx, w.c.cfg.PollInterval); err != nil {
				return err
			}
		}
	}
}

// process hands a batch to the processor, KPL aggregated records unpacked, and checkpoints
// once its effects are durable.
func (w *shardWorker) process(ctx context.Context, records []ktypes.Record) error {
	b := Batch{ShardID: w.shardID, Records: make([]Record, 0, len(records))}
	for _, r := range records {
		rec := Record{
			PartitionKey: aws.ToString(r.PartitionKey), Data: r.Data,
			SequenceNumber: aws.ToString(r.SequenceNumber), Arrival: aws.ToTime(r.ApproximateArrivalTimestamp),
		}
		subs, err := Deaggregate(rec)
		if err != nil {
			rec.Err = err
			subs = []Record{rec}
		}
		b.Records = append(b.Records, subs...)
	}
	if err := w.c.cfg.Processor.Process(ctx, b); err != nil {
		return err
	}
	now := time.Now()
	for _, r := range b.Records {
		if !r.Arrival.IsZero() {
			recordLatency.Observe(now.Sub(r.Arrival).Seconds())
		}
	}
	recordsProcessed.Add(float64(len(b.Records)))
	return w.checkpoint(ctx, aws.ToString(records[len(records)-1].SequenceNumber))
}
