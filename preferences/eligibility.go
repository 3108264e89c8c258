package preferences

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/internal/sqlfile"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// PurposeEmailMarketing is the consent purpose a topic's campaign needs (consents.purpose).
const PurposeEmailMarketing = "email_marketing"

// Reasons a recipient is not eligible, as recorded with the recipient left out.
const (
	ReasonSuppressed   = "suppressed"   // the address is on the suppression list
	ReasonUnsubscribed = "unsubscribed" // not subscribed to the campaign's topic
	ReasonNoConsent    = "no_consent"   // no granted email_marketing consent
	ReasonNoAddress    = "no_address"   // no email address
)

// ErrUnknownTopic is returned for a topic that is not in the catalogue (or is archived).
var ErrUnknownTopic = errors.New("unknown topic")

// Recipient is one customer a message would go to.
type Recipient struct {
	CustomerID string
	Email      string
}

// Querier is the part of pgx (a pool, a connection or a transaction) the checks use.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Check returns, for every recipient who may not receive a message, the reason
// (ReasonSuppressed, ReasonUnsubscribed, ReasonNoConsent, ReasonNoAddress); eligible
// recipients are absent from the map. Every check reads Postgres, the system of record, in one
// query for the whole batch. With topic "" only the suppression list applies; with a topic,
// the recipient must also be subscribed to it (a subscriptions row with status subscribed, or
// no row and the topic's default_status subscribed) and have granted PurposeEmailMarketing.
// Reasons are checked in that order: suppression first. The suppression list includes what
// erasures kept of suppressed addresses (their SHA-256), so a forgotten customer's bounce or
// unsubscribe still applies to the address.
func Check(ctx context.Context, q Querier, topic string, rs []Recipient) (map[string]string, error) {
	out := map[string]string{}
	if len(rs) == 0 {
		return out, nil
	}
	if topic != "" {
		var ok bool
		if err := q.QueryRow(ctx, queries.Get("topic-active"), topic).Scan(&ok); err != nil {
			return nil, fmt.Errorf("check recipients: topic %s: %w", topic, err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: %q (tailor topic list shows the catalogue)", ErrUnknownTopic, topic)
		}
	}
	ids := make([]string, 0, len(rs))
	emails := make([]string, 0, len(rs))
	for _, r := range rs {
		if strings.TrimSpace(r.Email) == "" {
			out[r.CustomerID] = ReasonNoAddress
			continue
		}
		ids = append(ids, r.CustomerID)
		emails = append(emails, strings.ToLower(strings.TrimSpace(r.Email)))
	}
	rows, err := q.Query(ctx, queries.Get("ineligible"), ids, emails, topic, PurposeEmailMarketing)
	if err != nil {
		return nil, fmt.Errorf("check recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, reason string
		if err := rows.Scan(&id, &reason); err != nil {
			return nil, fmt.Errorf("check recipients: %w", err)
		}
		out[id] = reason
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("check recipients: %w", err)
	}
	return out, nil
}
