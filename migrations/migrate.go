package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed *.sql
var files embed.FS

// lockKey is the advisory lock that serialises concurrent migrators ("tailor" in ASCII).
const lockKey = 0x7461696c6f72

// Applied is one migration a run applied.
type Applied struct {
	Component string // "river" or "tailor"
	Version   int
	Name      string
}

func (a Applied) String() string { return fmt.Sprintf("%s %03d %s", a.Component, a.Version, a.Name) }

type migration struct {
	version int
	name    string
	sql     string
}

func load() ([]migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migrations: file %s: want NNN_name.sql", e.Name())
		}
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// Latest is the newest app schema version this binary knows.
func Latest() int {
	ms, _ := load()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Up applies River's migrations and then every app migration not yet applied, and returns what
// it applied (empty when the schema was current). It is safe to run concurrently.
func Up(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	ms, err := load()
	if err != nil {
		return nil, err
	}
	// River's migrations add enum values, which Postgres refuses to use in the transaction that
	// added them, so River runs its own transactions. A session advisory lock held on a dedicated
	// connection serialises concurrent migrators across both steps.
	lockConn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	defer lockConn.Release()
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockKey)); err != nil {
		return nil, fmt.Errorf("migrations: lock: %w", err)
	}
	defer lockConn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(lockKey)) //nolint:errcheck

	var applied []Applied
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return nil, err
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("migrations: river: %w", err)
	}
	for _, v := range res.Versions {
		applied = append(applied, Applied{Component: "river", Version: v.Version, Name: v.Name})
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tailor_migrations (
			version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrations: bookkeeping table: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT version FROM tailor_migrations")
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		have := make(map[int]bool, len(done))
		for _, v := range done {
			have[int(v)] = true
		}
		for _, m := range ms {
			if have[m.version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migrations: %03d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO tailor_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return err
			}
			applied = append(applied, Applied{Component: "tailor", Version: m.version, Name: m.name})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// Current returns the app schema version recorded in the database (0 when never migrated).
func Current(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var v int
	err := pool.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM tailor_migrations`).Scan(&v)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: never migrated
			return 0, nil
		}
		return 0, fmt.Errorf("migrations: current version: %w", err)
	}
	return v, nil
}
