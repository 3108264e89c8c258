package cdc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/internal/ctxtime"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// Defaults for Config.
const (
	StandbyTimeoutDefault = 10 * time.Second
	LockPollDefault       = time.Second
	RetryDelayDefault     = 500 * time.Millisecond
	RetryDelayMax         = 30 * time.Second
	WorkersDefault        = 16
	BatchSizeDefault      = 1000
	BatchDelayDefault     = 5 * time.Millisecond
)

// Config configures a CDC process. Zero values mean defaults.
type Config struct {
	// DatabaseURL is the Postgres URL; the replication connection adds replication=database.
	DatabaseURL string
	// Slot is the logical replication slot's name (required; [a-z0-9_]).
	Slot string
	// Publication is the publication's name (required; [a-z0-9_]).
	Publication string
	// StandbyTimeout is the heartbeat: a standby status update goes out at least this often,
	// also on an idle database. Default 10s; keep it below the server's wal_sender_timeout.
	StandbyTimeout time.Duration
	// LockPoll is how often a standby process retries the slot's advisory lock. Default 1s.
	LockPoll time.Duration
	// RetryDelay is the first wait after a failure (lost connection, DynamoDB error); it doubles
	// up to 30s. Default 500ms.
	RetryDelay time.Duration
	// Workers is the number of concurrent DynamoDB writers; changes of one customer always go
	// to the same writer, in order. Default 16.
	Workers int
	// BatchSize is the number of row changes applied (and then acknowledged) together. Default
	// 1000. A bigger transaction is applied while it arrives, a segment (SegmentChanges) at a
	// time once at least BatchSize of its changes are buffered, and acknowledged at its commit.
	BatchSize int
	// BatchDelay is how long committed changes may wait for more before being applied. Default 5ms.
	BatchDelay time.Duration
	// Logger receives progress and errors. Default slog.Default().
	Logger *slog.Logger
	// DeadLetters, when set, receives row changes DynamoDB refuses for what they hold
	// (profile.ErrWriteRefused: an item over 400 KB, nesting too deep, a number out of range) with
	// source "cdc", and the stream goes on. When nil, such a change is retried, holding the
	// stream, until someone fixes the row.
	DeadLetters DeadLetterer
	// OnApply, when set, is called after each batch is durable with the number of rows applied
	// and the commit times of their transactions (for latency measurements).
	OnApply func(rows int, commits []time.Time)
}

var nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (c Config) withDefaults() Config {
	c.StandbyTimeout = cmp.Or(c.StandbyTimeout, StandbyTimeoutDefault)
	c.LockPoll = cmp.Or(c.LockPoll, LockPollDefault)
	c.RetryDelay = cmp.Or(c.RetryDelay, RetryDelayDefault)
	c.Workers = cmp.Or(c.Workers, WorkersDefault)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.BatchDelay = cmp.Or(c.BatchDelay, BatchDelayDefault)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

func (c Config) validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("cdc: Config.DatabaseURL is empty")
	case !nameRE.MatchString(c.Slot):
		return fmt.Errorf("cdc: Config.Slot %q: use lower-case letters, digits and _", c.Slot)
	case !nameRE.MatchString(c.Publication):
		return fmt.Errorf("cdc: Config.Publication %q: use lower-case letters, digits and _", c.Publication)
	case c.StandbyTimeout < 0 || c.LockPoll < 0 || c.RetryDelay < 0 || c.BatchDelay < 0:
		return errors.New("cdc: Config durations must not be negative")
	case c.Workers < 0 || c.BatchSize < 0:
		return errors.New("cdc: Config.Workers and Config.BatchSize must not be negative")
	}
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		return fmt.Errorf("cdc: Config.DatabaseURL: %w", err)
	}
	return nil
}

// Store is where CDC writes profiles. Every method is a conditional write guarded by lsn and
// reports whether it happened (false: the profile already reflects this version or a newer one).
// *profile.Store implements it. Methods are called from several goroutines at once, but
// never concurrently for the same customer id.
type Store interface {
	// ApplyCRM applies a customers row: set maps columns to decoded values, null lists the
	// NULL columns; guarded by the row's version.
	ApplyCRM(ctx context.Context, id string, lsn uint64, set map[string]any, null []string) (bool, error)
	// DeleteCRM applies a deleted customers row (columns: the relation's), guarded likewise.
	DeleteCRM(ctx context.Context, id string, lsn uint64, columns []string) (bool, error)
	// ApplyEntry applies a subscriptions or consents row (nil columns: deleted), guarded by
	// the entry's version and its map's floor.
	ApplyEntry(ctx context.Context, id string, kind profile.EntryKind, key string, lsn uint64, columns map[string]any) (bool, error)
	// ClearEntries empties a preference map on an existing profile and raises its floor.
	ClearEntries(ctx context.Context, id string, kind profile.EntryKind, lsn uint64) (bool, error)
	// Scan calls fn for every profile, from several goroutines at once.
	Scan(ctx context.Context, segments int, fn func(*profile.Profile) error) error
}

var _ Store = (*profile.Store)(nil)

// DeadLetterer keeps refused changes; *deadletter.Store implements it.
type DeadLetterer interface {
	Put(ctx context.Context, source, reason string, payload []byte) error
}

// DeadLetterSource is the dead-letter source of refused row changes.
const DeadLetterSource = "cdc"

// CDC streams the CRM tables into profiles. Run it with Run; one CDC value runs once at a time.
type CDC struct {
	cfg   Config
	store Store
	log   *slog.Logger

	active       atomic.Bool
	confirmed    atomic.Uint64
	applied      atomic.Int64
	peakBuffered atomic.Int64 // the most row changes held in memory at once (tests)
}

// New returns a CDC process for cfg writing to store.
func New(cfg Config, store Store) (*CDC, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("cdc: store is nil")
	}
	return &CDC{cfg: cfg, store: store, log: cfg.Logger.With("slot", cfg.Slot)}, nil
}

// Active reports whether this process holds the slot (is not a standby).
func (c *CDC) Active() bool { return c.active.Load() }

// Confirmed returns the last LSN this process acknowledged to the server.
func (c *CDC) Confirmed() uint64 { return c.confirmed.Load() }

// Applied returns the number of row changes this process has applied (replays included).
func (c *CDC) Applied() int64 { return c.applied.Load() }

// Run streams changes until ctx ends, and returns nil then. It first waits for the slot's
// advisory lock (standby), creates the publication and slot when missing (backfilling existing
// rows from the slot's snapshot), then streams. Failures that may go away (lost connections, a
// Postgres restart, DynamoDB throttling or errors) are logged and retried with backoff from the
// last confirmed position. A misconfiguration that retrying cannot fix (wal_level, the role's
// privileges, a missing table, a DynamoDB request refused as invalid) ends Run with a
// *ConfigError saying what to fix (errors.Is(err, ErrPermanent)).
func (c *CDC) Run(ctx context.Context) error {
	delay := c.cfg.RetryDelay
	for {
		started := time.Now()
		err := c.runOnce(ctx)
		c.active.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if perm := permanent(err); perm != nil {
			c.log.Error("cdc: stopped: this needs a fix, retrying cannot help", "err", perm)
			return perm
		}
		if time.Since(started) > time.Minute {
			delay = c.cfg.RetryDelay
		}
		c.log.Warn("cdc: stopped, retrying", "err", err, "in", delay)
		if err := ctxtime.Sleep(ctx, delay); err != nil {
			return nil
		}
		delay = min(delay*2, RetryDelayMax)
	}
}

func (c *CDC) runOnce(ctx context.Context) error {
	lock, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	defer closeConn(lock)
	c.active.Store(true)
	c.log.Info("cdc: active")

	if err := ensurePublication(ctx, lock, c.cfg.Publication); err != nil {
		return err
	}
	repl, err := connectReplication(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer closePgConn(repl)
	start, err := c.prepareSlot(ctx, lock, repl)
	if err != nil {
		return err
	}
	return c.stream(ctx, lock, repl, start)
}

// acquire connects and waits until this process holds the slot's session advisory lock.
func (c *CDC) acquire(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("cdc: connect: %w", err)
	}
	var level string
	if err := conn.QueryRow(ctx, q("wal_level")).Scan(&level); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("cdc: wal_level: %w", err)
	}
	if err := checkWALLevel(level); err != nil {
		closeConn(conn)
		return nil, err
	}
	waiting := false
	for {
		var ok bool
		if err := conn.QueryRow(ctx, q("try_lock"), c.cfg.Slot).Scan(&ok); err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("cdc: try lock: %w", err)
		}
		if ok {
			return conn, nil
		}
		if !waiting {
			c.log.Info("cdc: another process holds the slot; waiting as standby")
			waiting = true
		}
		if err := ctxtime.Sleep(ctx, c.cfg.LockPoll); err != nil {
			closeConn(conn)
			return nil, err
		}
	}
}
