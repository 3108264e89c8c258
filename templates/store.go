package templates

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tailor-email/tailor/internal/sqlfile"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// ErrVersionConflict is returned (wrapped in a *VersionConflictError) when a template version is
// already published with different content.
var ErrVersionConflict = errors.New("templates: version already published with different content")

// ErrVersionNotFound is returned when no published version matches.
var ErrVersionNotFound = errors.New("templates: version not published")

// VersionConflictError says which version conflicts and what to do about it.
type VersionConflictError struct {
	Name    string
	Version int
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("template %s version %d is already published with different content: published versions are immutable; bump version in %s (to %d) and publish again",
		e.Name, e.Version, FileManifest, e.Version+1)
}

// Unwrap makes errors.Is(err, ErrVersionConflict) true.
func (e *VersionConflictError) Unwrap() error { return ErrVersionConflict }

// DB is what a Store needs from Postgres: *pgxpool.Pool, *pgx.Conn and pgx.Tx all have it.
type DB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store keeps published template versions in Postgres (table template_versions, migration 003).
// Versions are immutable. It is safe for concurrent use when its DB is.
type Store struct{ db DB }

// NewStore returns a Store over db.
func NewStore(db DB) *Store { return &Store{db: db} }

// Published is one stored version.
type Published struct {
	Name        string
	Version     int
	Checksum    string
	PublishedAt time.Time
	// Created is true when this call stored the version, false when the identical version was
	// already published.
	Created bool
}

// Publish stores t's files under its name and version. Publishing the same content again is a
// no-op (Created is false); publishing different content under an existing name and version
// returns a *VersionConflictError. Concurrent publishes of one version are safe: one stores it
// and the others see it.
func (s *Store) Publish(ctx context.Context, t *Template) (Published, error) {
	p := Published{Name: t.name, Version: t.version, Checksum: Checksum(t.files)}
	files, err := json.Marshal(t.files)
	if err != nil {
		return p, fmt.Errorf("publish template %s v%d: %w", t.name, t.version, err)
	}
	var stored string
	for attempt := 0; ; attempt++ {
		err = s.db.QueryRow(ctx, queries.Get("publish-version"), t.name, t.version, files, p.Checksum).
			Scan(&stored, &p.PublishedAt, &p.Created)
		if errors.Is(err, pgx.ErrNoRows) && attempt < 3 {
			continue // a concurrent publish committed after this statement's snapshot: read it now
		}
		break
	}
	if err != nil {
		return p, fmt.Errorf("publish template %s v%d: %w", t.name, t.version, dbError(err))
	}
	if stored != p.Checksum {
		return p, &VersionConflictError{Name: t.name, Version: t.version}
	}
	return p, nil
}

// Get returns a published version, parsed; ErrVersionNotFound when it was never published.
func (s *Store) Get(ctx context.Context, name string, version int) (*Template, Published, error) {
	return s.load(ctx, name, version, queries.Get("get-version"), name, version)
}

// Latest returns the highest published version of name; ErrVersionNotFound when there is none.
func (s *Store) Latest(ctx context.Context, name string) (*Template, Published, error) {
	return s.load(ctx, name, 0, queries.Get("latest-version"), name)
}

func (s *Store) load(ctx context.Context, name string, version int, sql string, args ...any) (*Template, Published, error) {
	p := Published{Name: name, Version: version}
	var files map[string]string
	err := s.db.QueryRow(ctx, sql, args...).Scan(&files, &p.Checksum, &p.PublishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		if version == 0 {
			return nil, p, fmt.Errorf("template %s: %w", name, ErrVersionNotFound)
		}
		return nil, p, fmt.Errorf("template %s v%d: %w", name, version, ErrVersionNotFound)
	}
	if err != nil {
		return nil, p, fmt.Errorf("load template %s: %w", name, dbError(err))
	}
	t, err := FromFiles(files)
	if err != nil {
		return nil, p, fmt.Errorf("load template %s: stored version does not parse: %w", name, err)
	}
	p.Version = t.version
	return t, p, nil
}

// dbError says what to do when the schema is missing; other errors pass through.
func dbError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("table template_versions does not exist: run tailor migrate (%s)", pgErr.Message)
	}
	return err
}

// Checksum is the sha256 (hex) of a template's files, independent of map order: the content
// identity of a published version.
func Checksum(files map[string]string) string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		for _, s := range []string{name, files[name]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(s)))
			h.Write(n[:])
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Checksum returns Checksum(t.Files()).
func (t *Template) Checksum() string { return Checksum(t.files) }
