package preferences

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeliveryRetention is how long an accepted webhook's id is remembered: a delivery with the
// same id within it gets the stored answer (same body) or a *ConflictError (another body).
const DeliveryRetention = 24 * time.Hour

// MaxDeliveryIDLen bounds a webhook-id.
const MaxDeliveryIDLen = 256

// Delivery is one webhook whose signature was verified: its webhook-id and raw body.
type Delivery struct {
	ID   string
	Body []byte
}

// errRaced: a concurrent delivery with the same id committed first.
var errRaced = errors.New("webhook delivery raced")

// Receive applies a verified webhook delivery exactly once and returns its JSON answer (a
// Receipt). The webhook-id is the idempotency key: within DeliveryRetention the same id and
// body get the stored answer again, byte for byte (replayed true), without applying anything;
// the same id with another body is a *ConflictError. Refusals are not remembered, so a sender
// retrying after the cause was fixed (the customer now exists) succeeds. The change, its audit
// row and the delivery record commit in one transaction: an answer means the change is durable.
//
// Errors: ErrMalformed, *ValidationError (schema, unknown topic), ErrUnknownCustomer (wrapped
// with the reason), *ConflictError, or a failure of Postgres (retry later).
func (s *Store) Receive(ctx context.Context, d Delivery) (answer []byte, replayed bool, err error) {
	if d.ID == "" || len(d.ID) > MaxDeliveryIDLen {
		return nil, false, &ValidationError{Field: "webhook-id", Reason: fmt.Sprintf("want 1 to %d bytes", MaxDeliveryIDLen)}
	}
	sum := sha256.Sum256(d.Body)
	if ans, ok, err := s.delivered(ctx, d.ID, sum[:]); err != nil || ok {
		return ans, ok, err
	}
	cs, err := DecodeChangeSet(d.Body, s.now())
	if err != nil {
		return nil, false, err
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		c, err := s.resolve(ctx, tx, cs)
		if err != nil {
			return err
		}
		if err := checkTopics(ctx, tx, cs.Topics); err != nil {
			return err
		}
		source := cmp.Or(cs.Source, SourceWebhook)
		r, err := apply(ctx, tx, change{customerID: c.ID, source: source, requestID: d.ID, occurredAt: cs.OccurredAt, topics: cs.Topics, consents: cs.Consents})
		if err != nil {
			return err
		}
		if answer, err = json.Marshal(r); err != nil {
			return err
		}
		var claimed bool
		err = tx.QueryRow(ctx, queries.Get("claim-delivery"), d.ID, sum[:], c.ID, string(answer), DeliveryRetention.Seconds()).Scan(&claimed)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRaced
		}
		return err
	})
	if errors.Is(err, errRaced) {
		ans, ok, err := s.delivered(ctx, d.ID, sum[:])
		if err == nil && !ok {
			err = fmt.Errorf("webhook %s: a concurrent delivery neither committed nor left a record", d.ID)
		}
		return ans, ok, err
	}
	if err != nil {
		return nil, false, err
	}
	return answer, false, nil
}

// delivered looks up an earlier accepted delivery of the id.
func (s *Store) delivered(ctx context.Context, id string, sum []byte) ([]byte, bool, error) {
	var stored []byte
	var answer string
	err := s.db.QueryRow(ctx, queries.Get("delivery"), id, DeliveryRetention.Seconds()).Scan(&stored, &answer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("webhook %s: look up earlier delivery: %w", id, err)
	}
	if !bytes.Equal(stored, sum) {
		return nil, false, &ConflictError{Reason: fmt.Sprintf("webhook-id %q was used for another body in the last %s: give each change its own webhook-id", id, DeliveryRetention)}
	}
	return []byte(answer), true, nil
}

// resolve finds the change set's customer: by customer_id when given (creating the row when
// configured and the email is given too), else by email.
func (s *Store) resolve(ctx context.Context, tx pgx.Tx, cs *ChangeSet) (customer, error) {
	if cs.CustomerID == "" {
		return s.customerByEmail(ctx, tx, cs.Email)
	}
	c, err := s.customerByID(ctx, tx, cs.CustomerID)
	if !errors.Is(err, ErrUnknownCustomer) || !s.create || cs.Email == "" {
		return c, err
	}
	if _, err := tx.Exec(ctx, queries.Get("create-customer"), cs.CustomerID, cs.Email); err != nil {
		return c, fmt.Errorf("create customer %s: %w", cs.CustomerID, err)
	}
	return s.customerByID(ctx, tx, cs.CustomerID)
}

// PurgeDeliveries deletes webhook delivery records older than DeliveryRetention and returns
// how many went. Receive already treats them as absent; this only keeps the table small.
func (s *Store) PurgeDeliveries(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, queries.Get("purge-deliveries"), DeliveryRetention.Seconds())
	if err != nil {
		return 0, fmt.Errorf("purge webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PurgeDeliveriesEvery runs PurgeDeliveries every interval until ctx ends (tailor serve runs it
// beside the webhook); failures are returned to onError and retried at the next tick.
func (s *Store) PurgeDeliveriesEvery(ctx context.Context, interval time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.PurgeDeliveries(ctx); err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
