package apikeys

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/internal/httpapi"
)

// Checker defaults.
const (
	// MaxAgeDefault bounds how old the Checker's copy of the active keys may be when it
	// answers: a revocation takes effect within it (plus one query).
	MaxAgeDefault = 2 * time.Second
	// MissReloadDefault is how often, at most, an unknown key makes the Checker reload, so a
	// key created a moment ago works at once while a flood of wrong keys costs at most a few
	// queries per second.
	MissReloadDefault = 250 * time.Millisecond
	// LastUsedEveryDefault is how often, at most, a Checker records a key's last use.
	LastUsedEveryDefault = time.Minute
)

// CheckerConfig configures a Checker. Zero values mean the defaults.
type CheckerConfig struct {
	// DB is the Postgres holding api_keys. Required.
	DB DB
	// MaxAge is how old the cached active keys may be when a request is checked; older, they
	// are reloaded first. Default MaxAgeDefault (2 s); at most 5 s, the revocation promise.
	MaxAge time.Duration
	// MissReload: an unknown key reloads the keys when the copy is older than this. Default
	// MissReloadDefault (250 ms).
	MissReload time.Duration
	// LastUsedEvery: a key's last_used_at is written at most this often by one Checker.
	// Default LastUsedEveryDefault (1 min).
	LastUsedEvery time.Duration
	// Now is the clock; default time.Now. Tests move it to expire the cache without sleeping.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// maxAgeLimit is the revocation promise: a revoked key is refused within 5 s.
const maxAgeLimit = 5 * time.Second

func (c CheckerConfig) withDefaults() CheckerConfig {
	c.MaxAge = cmp.Or(c.MaxAge, MaxAgeDefault)
	c.MissReload = cmp.Or(c.MissReload, MissReloadDefault)
	c.LastUsedEvery = cmp.Or(c.LastUsedEvery, LastUsedEveryDefault)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c CheckerConfig) validate() error {
	switch {
	case c.DB == nil:
		return errors.New("apikeys: CheckerConfig.DB is required")
	case c.MaxAge < 0 || c.MaxAge > maxAgeLimit:
		return fmt.Errorf("apikeys: CheckerConfig.MaxAge %v: want at most %v (revocations take effect within it)", c.MaxAge, maxAgeLimit)
	case c.MissReload < 0 || c.LastUsedEvery < 0:
		return errors.New("apikeys: CheckerConfig.MissReload and LastUsedEvery must not be negative")
	}
	return nil
}

// activeKey is a cached row of api_keys.
type activeKey struct {
	id     int64
	scopes []string
}

// Checker implements httpapi.KeyChecker over api_keys. It keeps a copy of the active keys,
// keyed by SHA-256, and reloads it when a request finds it older than MaxAge, so Postgres sees
// one small query per MaxAge at most, whatever the request rate, and a revoked key is refused
// within MaxAge. A key is found by its hash: the map lookup's timing says nothing useful about
// a key, since nobody can pick keys with a chosen hash. Safe for concurrent use; concurrent
// requests share one reload.
type Checker struct {
	cfg CheckerConfig

	mu       sync.Mutex // guards the fields below, and is held during a reload
	keys     map[[sha256.Size]byte]activeKey
	loadedAt time.Time           // zero before the first load
	touched  map[int64]time.Time // when this Checker last wrote a key's last_used_at
}

var _ httpapi.KeyChecker = (*Checker)(nil)

// NewChecker returns a Checker; it reads api_keys on the first check.
func NewChecker(cfg CheckerConfig) (*Checker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Checker{cfg: cfg, touched: map[int64]time.Time{}}, nil
}

// Check implements httpapi.KeyChecker: nil for an active key granting scope, ErrUnknownKey
// for a missing, unknown or revoked key, ErrMissingScope (wrapped) for a key without scope,
// and another error when api_keys cannot be read.
func (c *Checker) Check(ctx context.Context, key, scope string) error {
	if key == "" {
		return httpapi.ErrUnknownKey
	}
	sum := sha256.Sum256([]byte(key))
	k, ok, err := c.lookup(ctx, sum)
	if err != nil {
		return err
	}
	if !ok {
		return httpapi.ErrUnknownKey
	}
	if !slices.Contains(k.scopes, scope) {
		return fmt.Errorf("%w: key %d grants %v", httpapi.ErrMissingScope, k.id, k.scopes)
	}
	c.touch(ctx, k.id)
	return nil
}

func (c *Checker) lookup(ctx context.Context, sum [sha256.Size]byte) (activeKey, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if c.loadedAt.IsZero() || now.Sub(c.loadedAt) >= c.cfg.MaxAge {
		if err := c.reload(ctx, now); err != nil {
			return activeKey{}, false, err
		}
	}
	k, ok := c.keys[sum]
	if !ok && now.Sub(c.loadedAt) >= c.cfg.MissReload {
		if err := c.reload(ctx, now); err != nil {
			return activeKey{}, false, err
		}
		k, ok = c.keys[sum]
	}
	return k, ok, nil
}

// reload replaces the cached keys; c.mu is held.
func (c *Checker) reload(ctx context.Context, now time.Time) error {
	rows, err := c.cfg.DB.Query(ctx, queries.Get("active"))
	if err != nil {
		return fmt.Errorf("load API keys: %w", err)
	}
	keys := map[[sha256.Size]byte]activeKey{}
	var (
		id     int64
		hash   []byte
		scopes []string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &hash, &scopes}, func() error {
		if len(hash) != sha256.Size {
			return fmt.Errorf("API key %d: stored hash has %d bytes, want %d", id, len(hash), sha256.Size)
		}
		keys[[sha256.Size]byte(hash)] = activeKey{id: id, scopes: slices.Clone(scopes)}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load API keys: %w", err)
	}
	c.keys, c.loadedAt = keys, now
	return nil
}

// touch records a key's use, at most once per LastUsedEvery. A failure is logged, not returned:
// the request is authenticated either way.
func (c *Checker) touch(ctx context.Context, id int64) {
	c.mu.Lock()
	now := c.cfg.Now()
	last, seen := c.touched[id]
	due := !seen || now.Sub(last) >= c.cfg.LastUsedEvery
	if due {
		c.touched[id] = now
	}
	c.mu.Unlock()
	if !due {
		return
	}
	if _, err := c.cfg.DB.Exec(ctx, queries.Get("touch"), id); err != nil {
		c.cfg.Logger.Warn("record API key use", "key_id", id, "err", err)
	}
}
