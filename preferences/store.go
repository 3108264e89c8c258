package preferences

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors of the preference center. The HTTP layer (preferences/web) and the CLI map them to
// status codes and exit codes; callers match them with errors.Is / errors.As.
var (
	// ErrUnknownCustomer: no customers row has the id or address a change names.
	ErrUnknownCustomer = errors.New("unknown customer")
	// ErrMalformed: a body that is not a JSON object.
	ErrMalformed = errors.New("malformed change set")
	// ErrInvalidChange is what every *ValidationError unwraps to.
	ErrInvalidChange = errors.New("invalid change set")
	// ErrConflict is what every *ConflictError unwraps to.
	ErrConflict = errors.New("conflict")
	// ErrTopicExists: tailor topic create with a name already in the catalogue.
	ErrTopicExists = errors.New("topic already exists")
)

// ValidationError is a change set that is JSON but breaks the schema or a rule the schema
// cannot state (an unknown topic, a purpose given twice, occurred_at in the future). Field is
// the JSON pointer of the offending value ("" for the whole document).
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidChange) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalidChange }

// ConflictError is a request that contradicts what is stored: a webhook-id already used for
// another body, or an address that several customers share.
type ConflictError struct{ Reason string }

func (e *ConflictError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// DB is the part of a pgx pool the store uses; *pgxpool.Pool implements it.
type DB interface {
	Querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Sources of changes, as recorded in subscriptions.source, consents.source and the audit log.
const (
	SourceWebhook  = "webhook"
	SourcePage     = "preference_page"
	SourceOneClick = "one_click"
	SourceErasure  = "erasure"
)

// Config configures a Store. Zero values mean defaults.
type Config struct {
	// DB is Postgres, the system of record. Required.
	DB DB
	// CreateCustomers makes a webhook that names an unknown customer by both customer_id and
	// email create the customers row instead of being refused. Default false (404).
	CreateCustomers bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Store is the preference center over Postgres: topics, subscriptions, consents, suppressions
// and their audit log, webhook deliveries, erasure and export. Every change lands in one
// transaction with its audit row; CDC carries subscriptions and consents to the profiles. It is
// safe for concurrent use.
type Store struct {
	db     DB
	create bool
	now    func() time.Time
}

// NewStore returns the store for cfg.
func NewStore(cfg Config) (*Store, error) {
	if cfg.DB == nil {
		return nil, errors.New("preferences: Config.DB is required")
	}
	s := &Store{db: cfg.DB, create: cfg.CreateCustomers, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// customer is what the store reads of a customers row.
type customer struct {
	ID, Email, Locale string
}

func (s *Store) customerByID(ctx context.Context, q Querier, id string) (customer, error) {
	var c customer
	err := q.QueryRow(ctx, queries.Get("customer-by-id"), id).Scan(&c.ID, &c.Email, &c.Locale)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w: no customer has id %q", ErrUnknownCustomer, id)
	}
	if err != nil {
		return c, fmt.Errorf("customer %s: %w", id, err)
	}
	return c, nil
}

// customerByEmail finds the one customer with the address (case-insensitively); several are a
// *ConflictError. The address is never repeated in errors, which end up in dead letters.
func (s *Store) customerByEmail(ctx context.Context, q Querier, email string) (customer, error) {
	rows, err := q.Query(ctx, queries.Get("customers-by-email"), email)
	if err != nil {
		return customer{}, fmt.Errorf("customer by email: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (customer, error) {
		var c customer
		return c, r.Scan(&c.ID, &c.Email, &c.Locale)
	})
	switch {
	case err != nil:
		return customer{}, fmt.Errorf("customer by email: %w", err)
	case len(cs) == 0:
		return customer{}, fmt.Errorf("%w: no customer has that email address (send customer_id, or create the customer in the CRM first)", ErrUnknownCustomer)
	case len(cs) > 1:
		return customer{}, &ConflictError{Reason: "several customers have that email address: send customer_id instead"}
	}
	return cs[0], nil
}
