package preferences

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// ProfileEraser erases a customer's DynamoDB profile (CRM and behavioural parts) and leaves a
// marker the event path respects; *profile.Store implements it.
type ProfileEraser interface {
	Erase(ctx context.Context, id string, at time.Time) error
}

// ProfileGetter reads a profile; *profile.Store implements it.
type ProfileGetter interface {
	Get(ctx context.Context, id string) (*profile.Profile, error)
}

var (
	_ ProfileEraser = (*profile.Store)(nil)
	_ ProfileGetter = (*profile.Store)(nil)
)

// subject is who an erasure or export is about: the ids and lower-cased addresses found from
// the reference the operator gave.
type subject struct {
	ids, emails []string
}

// findSubject resolves ref (a customer id, or an address when it contains @) to every id and
// address Postgres pairs with it: customers rows, rendered messages and suppressions.
func (s *Store) findSubject(ctx context.Context, ref string) (subject, error) {
	ref = strings.TrimSpace(ref)
	var sub subject
	switch {
	case ref == "":
		return sub, &ValidationError{Field: "customer", Reason: "give a customer id or an email address"}
	case strings.Contains(ref, "@"):
		sub.emails = []string{strings.ToLower(ref)}
	default:
		sub.ids = []string{ref}
	}
	rows, err := s.db.Query(ctx, queries.Get("forget-find"), sub.ids, sub.emails)
	if err != nil {
		return sub, fmt.Errorf("find customer: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, email *string
		if err := rows.Scan(&id, &email); err != nil {
			return sub, fmt.Errorf("find customer: %w", err)
		}
		if id != nil && *id != "" && !slices.Contains(sub.ids, *id) {
			sub.ids = append(sub.ids, *id)
		}
		if email != nil && *email != "" && !slices.Contains(sub.emails, *email) {
			sub.emails = append(sub.emails, *email)
		}
	}
	if err := rows.Err(); err != nil {
		return sub, fmt.Errorf("find customer: %w", err)
	}
	slices.Sort(sub.ids)
	slices.Sort(sub.emails)
	return sub, nil
}

// Forgotten reports an erasure.
type Forgotten struct {
	Customers []string         // the ids erased (profiles included)
	Deleted   map[string]int64 // table -> rows deleted
	// KeptSuppressions counts suppressed addresses kept as a SHA-256 only (erased_suppressions),
	// so that a bounce, complaint or global unsubscribe still applies if the address returns.
	KeptSuppressions int64
	AuditID          int64 // the erasure's own audit row, which holds no personal data
}

// Forget erases a customer (ref: an id, or an address, which covers every customer with it):
// the DynamoDB profile of every id (profiles.Erase: CRM and behavioural data go, a marker stays
// so events still in the stream are not aggregated into it), and in one Postgres transaction
// the customers rows with their subscriptions and consents, rendered messages, the audit rows,
// webhook delivery records and dead letters that mention an id or address, and suppressions —
// which keep only the SHA-256 of the address and the reason, so that sending to it stays
// blocked. One audit row without personal data records the erasure (the SHA-256 of each id
// and the counts). Profiles are erased before the transaction (so a failure can be retried:
// Postgres still names them) and again after it. Forgetting twice is harmless; an address
// nothing is held about is ErrUnknownCustomer.
func (s *Store) Forget(ctx context.Context, profiles ProfileEraser, ref string) (*Forgotten, error) {
	sub, err := s.findSubject(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(sub.ids) == 0 && len(sub.emails) == 1 && !s.mentioned(ctx, sub) {
		return nil, fmt.Errorf("%w: nothing is held about that address", ErrUnknownCustomer)
	}
	now := s.now()
	erase := func() error {
		for _, id := range sub.ids {
			if err := profiles.Erase(ctx, id, now); err != nil {
				return err
			}
		}
		return nil
	}
	if err := erase(); err != nil {
		return nil, err
	}
	out := &Forgotten{Customers: sub.ids, Deleted: map[string]int64{}}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, queries.Get("forget-begin")); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, queries.Get("forget-keep-suppressions"), sub.ids, sub.emails)
		if err != nil {
			return fmt.Errorf("keep suppressions: %w", err)
		}
		out.KeptSuppressions = tag.RowsAffected()
		byID, byBoth := []any{sub.ids}, []any{sub.ids, sub.emails}
		for _, step := range []struct {
			table, query string
			args         []any
		}{
			{"suppressions", "forget-suppressions", byBoth},
			{"subscriptions", "forget-subscriptions", byID},
			{"consents", "forget-consents", byID},
			{"customers", "forget-customers", byID},
			{"rendered_messages", "forget-messages", byBoth},
			{"preference_audit", "forget-audit", byID},
			{"webhook_deliveries", "forget-deliveries", byID},
			{"dead_letters", "forget-dead-letters", byBoth},
			{"river_job", "forget-jobs", byBoth},
		} {
			tag, err := tx.Exec(ctx, queries.Get(step.query), step.args...)
			if err != nil {
				return fmt.Errorf("erase %s: %w", step.table, err)
			}
			out.Deleted[step.table] = tag.RowsAffected()
		}
		hashes := make([]string, len(sub.ids))
		for i, id := range sub.ids {
			sum := sha256.Sum256([]byte(id))
			hashes[i] = hex.EncodeToString(sum[:])
		}
		changes, err := json.Marshal(map[string]any{"customer_id_sha256": hashes})
		if err != nil {
			return err
		}
		outcome, err := json.Marshal(map[string]any{"deleted": out.Deleted, "kept_suppression_hashes": out.KeptSuppressions, "profiles_erased": len(sub.ids)})
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, queries.Get("forget-record"), changes, outcome).Scan(&out.AuditID)
	})
	if err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	// CDC may have applied an older change of a customers row between the first erasure and
	// the commit; its delete follows and clears the CRM part, and this makes it clean at once.
	if err := erase(); err != nil {
		return nil, err
	}
	return out, nil
}

// mentioned reports whether any dead letter mentions the subject.
func (s *Store) mentioned(ctx context.Context, sub subject) bool {
	rows, err := s.db.Query(ctx, queries.Get("export-dead-letters"), sub.ids, sub.emails)
	if err != nil {
		return true // let Forget run and report the real error
	}
	defer rows.Close()
	return rows.Next()
}

// Export is everything held about a customer, as `tailor customer export` prints it. Rows are
// the tables' own columns as JSON.
type Export struct {
	Reference         string            `json:"reference"`
	ExportedAt        time.Time         `json:"exported_at"`
	CustomerIDs       []string          `json:"customer_ids"`
	Emails            []string          `json:"emails"`
	Customers         []json.RawMessage `json:"customers"`
	Subscriptions     []json.RawMessage `json:"subscriptions"`
	Consents          []json.RawMessage `json:"consents"`
	Suppressions      []json.RawMessage `json:"suppressions"`
	PreferenceAudit   []json.RawMessage `json:"preference_audit"`
	WebhookDeliveries []json.RawMessage `json:"webhook_deliveries"`
	RenderedMessages  []json.RawMessage `json:"rendered_messages"`
	DeadLetters       []json.RawMessage `json:"dead_letters"`
	// Profiles are the DynamoDB profiles by id, as segments and templates see them (the
	// fields of `tailor segment fields`), with erased_at for an erased one.
	Profiles map[string]map[string]any `json:"profiles"`
}

// Export collects everything held about a customer (ref as for Forget). An address or id
// nothing is held about is ErrUnknownCustomer.
func (s *Store) Export(ctx context.Context, profiles ProfileGetter, ref string) (*Export, error) {
	sub, err := s.findSubject(ctx, ref)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	out := &Export{Reference: strings.TrimSpace(ref), ExportedAt: now, CustomerIDs: nonNil(sub.ids), Emails: nonNil(sub.emails), Profiles: map[string]map[string]any{}}
	byID, byBoth := []any{sub.ids}, []any{sub.ids, sub.emails}
	for _, part := range []struct {
		query string
		args  []any
		dst   *[]json.RawMessage
	}{
		{"export-customers", byID, &out.Customers},
		{"export-subscriptions", byID, &out.Subscriptions},
		{"export-consents", byID, &out.Consents},
		{"export-suppressions", byBoth, &out.Suppressions},
		{"export-audit", byID, &out.PreferenceAudit},
		{"export-deliveries", byID, &out.WebhookDeliveries},
		{"export-messages", byBoth, &out.RenderedMessages},
		{"export-dead-letters", byBoth, &out.DeadLetters},
	} {
		rows, err := s.db.Query(ctx, queries.Get(part.query), part.args...)
		if err != nil {
			return nil, fmt.Errorf("export: %s: %w", part.query, err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[json.RawMessage])
		if err != nil {
			return nil, fmt.Errorf("export: %s: %w", part.query, err)
		}
		*part.dst = nonNil(got)
	}
	for _, id := range sub.ids {
		p, err := profiles.Get(ctx, id)
		if errors.Is(err, profile.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		f := p.Fields(now)
		if p.Erased() {
			f["erased_at"] = p.ErasedAt
		}
		out.Profiles[id] = f
	}
	if len(out.Customers)+len(out.Suppressions)+len(out.RenderedMessages)+len(out.DeadLetters)+len(out.PreferenceAudit)+len(out.Profiles) == 0 {
		return nil, fmt.Errorf("%w: nothing is held about %s", ErrUnknownCustomer, describeRef(ref))
	}
	return out, nil
}

func describeRef(ref string) string {
	if strings.Contains(ref, "@") {
		return "that address"
	}
	return fmt.Sprintf("customer %q", strings.TrimSpace(ref))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
