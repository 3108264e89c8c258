package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/sqlfile"
	"github.com/tailor-email/tailor/internal/suggest"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// Scopes are the scopes a key may grant, in the order keys list them.
var Scopes = []string{httpapi.ScopeEvents, httpapi.ScopeSend, httpapi.ScopeWebhooks, httpapi.ScopeAdmin}

// KeyPrefix starts every key, so a key is recognisable in a config file or a secret scanner.
const KeyPrefix = "tlr_"

// keyRandomBytes is a key's entropy: 192 bits, far beyond guessing, so one unsalted SHA-256
// is a safe way to store it.
const keyRandomBytes = 24

// shownPrefixLen is how much of a key `tailor apikey list` shows: "tlr_" and 4 characters.
const shownPrefixLen = len(KeyPrefix) + 4

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewKey returns a new random key: KeyPrefix and 39 lower-case base32 characters.
func NewKey() (string, error) {
	raw := make([]byte, keyRandomBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("new API key: %w", err)
	}
	return KeyPrefix + strings.ToLower(keyEncoding.EncodeToString(raw)), nil
}

// Errors of Store.
var (
	// ErrNotFound: no active key has that name or id.
	ErrNotFound = errors.New("no active API key with that name or id")
	// ErrNameTaken: an active key already has that name.
	ErrNameTaken = errors.New("an active API key already has that name")
	// ErrInvalid: a name or scope list that Create refuses; the error wrapping it says why.
	ErrInvalid = errors.New("invalid API key name or scopes")
)

// invalidError is an ErrInvalid whose text is only the reason.
type invalidError struct{ reason string }

func (e invalidError) Error() string { return e.reason }
func (e invalidError) Unwrap() error { return ErrInvalid }

func invalidf(format string, args ...any) error { return invalidError{fmt.Sprintf(format, args...)} }

var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,63}$`)

// Key is one stored key, without its secret.
type Key struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"` // the key's first characters, e.g. "tlr_abcd"
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"` // written at most once a minute per server
	RevokedAt  *time.Time `json:"revoked_at"`
}

// Created is a key Create just stored, with its secret: the only time the secret exists
// outside the client that uses it.
type Created struct {
	Key
	Secret string `json:"key"`
}

// DB is what the Store and the Checker need from Postgres: *pgxpool.Pool, *pgx.Conn and pgx.Tx
// all have it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store creates, lists and revokes API keys. It is safe for concurrent use when its DB is.
type Store struct{ db DB }

// NewStore returns a Store over db.
func NewStore(db DB) *Store { return &Store{db: db} }

// ParseScopes checks scopes against Scopes and returns them without duplicates, in Scopes'
// order. Each element may itself be a comma-separated list ("send,events"). An unknown scope
// is an error wrapping ErrInvalid that suggests the closest known one.
func ParseScopes(scopes []string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range scopes {
		for _, one := range strings.Split(s, ",") {
			one = strings.ToLower(strings.TrimSpace(one))
			if one == "" {
				continue
			}
			if !slices.Contains(Scopes, one) {
				hint := ""
				if near := suggest.Closest(one, Scopes); near != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", near)
				}
				return nil, invalidf("unknown scope %q%s; the scopes are %s", one, hint, strings.Join(Scopes, ", "))
			}
			want[one] = true
		}
	}
	if len(want) == 0 {
		return nil, invalidf("name at least one scope (%s)", strings.Join(Scopes, ", "))
	}
	var out []string
	for _, s := range Scopes {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// Create stores a new key named name granting scopes, and returns it with its secret. Names
// start with a letter and hold at most 64 letters, digits, '.', '_' or '-'; an active key's
// name is unique (ErrNameTaken), a revoked key's name may be used again.
func (s *Store) Create(ctx context.Context, name string, scopes []string) (Created, error) {
	if !nameRE.MatchString(name) {
		return Created{}, invalidf("name %q: start with a letter, then at most 63 letters, digits, '.', '_' or '-'", name)
	}
	scopes, err := ParseScopes(scopes)
	if err != nil {
		return Created{}, err
	}
	secret, err := NewKey()
	if err != nil {
		return Created{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	k := Created{Secret: secret, Key: Key{Name: name, Prefix: secret[:shownPrefixLen], Scopes: scopes}}
	err = s.db.QueryRow(ctx, queries.Get("create"), name, sum[:], k.Prefix, scopes).Scan(&k.ID, &k.CreatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "api_keys_active_name_idx" {
		return Created{}, fmt.Errorf("%w: %q (revoke it first, or pick another name)", ErrNameTaken, name)
	}
	if err != nil {
		return Created{}, fmt.Errorf("create API key %q: %w", name, err)
	}
	return k, nil
}

// List returns every key, active ones first, each group oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.db.Query(ctx, queries.Get("list"))
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanKey)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// Revoke revokes the active key named nameOrID, or numbered so when it is all digits (names
// start with a letter), and returns it. Servers refuse it within their Checker's MaxAge. An
// unknown or already revoked key is ErrNotFound.
func (s *Store) Revoke(ctx context.Context, nameOrID string) (Key, error) {
	id, err := strconv.ParseInt(nameOrID, 10, 64)
	if err != nil || id <= 0 {
		id = 0
	}
	rows, err := s.db.Query(ctx, queries.Get("revoke"), nameOrID, id)
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key %q: %w", nameOrID, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, scanKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("%w: %q", ErrNotFound, nameOrID)
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key %q: %w", nameOrID, err)
	}
	return k, nil
}

func scanKey(r pgx.CollectableRow) (Key, error) {
	var k Key
	err := r.Scan(&k.ID, &k.Name, &k.Prefix, &k.Scopes, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
	return k, err
}
