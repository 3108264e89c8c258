package preferences

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Bounds of a change set.
const (
	// MaxChangeSetBytes bounds a webhook body: 50 topics and 50 consents fit many times over.
	MaxChangeSetBytes = 64 << 10
	// MaxFutureSkew is how far ahead of the server clock occurred_at may be.
	MaxFutureSkew = 5 * time.Minute
)

// ChangeSetSchema is the JSON Schema of a change set (draft 2020-12), as `tailor webhook
// schema` prints it and the README shows it.
//
//go:embed changeset.schema.json
var ChangeSetSchema []byte

var changeSetSchema = func() *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ChangeSetSchema))
	if err != nil {
		panic(err) // embedded: any test catches it
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://tailor.email/schemas/preference-change/v1.json"
	if err := c.AddResource(url, doc); err != nil {
		panic(err)
	}
	return c.MustCompile(url)
}()

// ChangeSet is one recipient's preference changes from a preference center.
type ChangeSet struct {
	CustomerID string            `json:"customer_id,omitempty"`
	Email      string            `json:"email,omitempty"`
	OccurredAt time.Time         `json:"occurred_at"`
	Source     string            `json:"source,omitempty"`
	Topics     map[string]string `json:"topics,omitempty"`
	Consents   []ConsentChange   `json:"consents,omitempty"`
}

// ConsentChange is one consent a change set grants or withdraws.
type ConsentChange struct {
	Purpose string `json:"purpose"`
	Granted bool   `json:"granted"`
	Source  string `json:"source,omitempty"`
}

// DecodeChangeSet parses and validates a webhook body against ChangeSetSchema and the rules
// the schema cannot state: a body over MaxChangeSetBytes, not UTF-8 or not one JSON object is
// ErrMalformed; one that breaks the schema, names a purpose twice or has occurred_at more than
// MaxFutureSkew after now is a *ValidationError naming the field. Topic names are checked
// against the catalogue later, by Receive. It never panics, whatever the input.
func DecodeChangeSet(body []byte, now time.Time) (*ChangeSet, error) {
	if len(body) > MaxChangeSetBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(body), MaxChangeSetBytes)
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, fmt.Errorf("%w: want a JSON object", ErrMalformed)
	}
	if err := changeSetSchema.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return nil, schemaError(ve)
		}
		return nil, &ValidationError{Reason: err.Error()}
	}
	var cs ChangeSet
	if err := json.Unmarshal(body, &cs); err != nil {
		// The schema admits only what decodes; this is a defect, reported as the body's fault.
		return nil, &ValidationError{Reason: err.Error()}
	}
	cs.CustomerID, cs.Email = strings.TrimSpace(cs.CustomerID), strings.ToLower(strings.TrimSpace(cs.Email))
	if cs.OccurredAt.After(now.Add(MaxFutureSkew)) {
		return nil, &ValidationError{Field: "/occurred_at", Reason: fmt.Sprintf("is %s ahead of the server clock; at most %s is allowed", cs.OccurredAt.Sub(now).Round(time.Second), MaxFutureSkew)}
	}
	cs.OccurredAt = cs.OccurredAt.UTC()
	seen := map[string]bool{}
	for i, c := range cs.Consents {
		if seen[c.Purpose] {
			return nil, &ValidationError{Field: fmt.Sprintf("/consents/%d/purpose", i), Reason: fmt.Sprintf("purpose %q is given twice", c.Purpose)}
		}
		seen[c.Purpose] = true
	}
	return &cs, nil
}

// schemaError turns the validator's output into one line naming the deepest failures, e.g.
// "/topics/news: value must be one of 'subscribed', 'unsubscribed', 'pending'".
func schemaError(ve *jsonschema.ValidationError) *ValidationError {
	var field string
	var msgs, missing []string
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		msg := u.Error.String()
		if strings.HasPrefix(msg, "'allOf' failed") || strings.HasPrefix(msg, "'anyOf' failed") || strings.HasPrefix(msg, "validation failed") {
			continue
		}
		if m, ok := strings.CutPrefix(msg, "missing property "); ok && u.InstanceLocation == "" {
			missing = append(missing, m)
			continue
		}
		if field == "" {
			field = u.InstanceLocation
		}
		if u.InstanceLocation != field && u.InstanceLocation != "" {
			msg = u.InstanceLocation + ": " + msg
		}
		if !slices.Contains(msgs, msg) {
			msgs = append(msgs, msg)
		}
	}
	if len(missing) > 0 {
		msgs = append(msgs, "missing property "+strings.Join(missing, " or "))
	}
	if len(msgs) == 0 {
		return &ValidationError{Reason: strings.ReplaceAll(ve.Error(), "\n", " ")}
	}
	if len(msgs) > 3 {
		msgs = append(msgs[:3], fmt.Sprintf("and %d more", len(msgs)-3))
	}
	return &ValidationError{Field: field, Reason: strings.Join(msgs, "; ")}
}

// Entries lists the topics and consent purposes of a change by outcome.
type Entries struct {
	Topics   []string `json:"topics"`
	Consents []string `json:"consents"`
}

// Receipt is the answer to an accepted change: what took effect and what was older than the
// stored value (and so left as it was). It is stored with a webhook delivery and given again,
// byte for byte, to a replay.
type Receipt struct {
	Status     string  `json:"status"` // always "accepted"
	CustomerID string  `json:"customer_id"`
	AuditID    int64   `json:"audit_id"`
	Applied    Entries `json:"applied"`
	Stale      Entries `json:"stale"`
	// Suppression is "added" or "removed" when the change set the global unsubscribe (the
	// preference page and one-click do; webhooks do not), "" when it did not change.
	Suppression string `json:"suppression,omitempty"`
}

// change is a change set resolved to a customer, as every path writes it.
type change struct {
	customerID string
	source     string
	requestID  string
	occurredAt time.Time
	topics     map[string]string
	consents   []ConsentChange
	// unsubscribeAll, when set, adds (true) or removes (false) the address's global
	// unsubscribe (suppressions, reason unsubscribed); email is then the customer's address.
	unsubscribeAll *bool
	email          string
}

// apply writes a change's subscriptions and consents, each only where the stored row is not
// newer (by occurred_at: subscriptions.updated_at, consents.at), and its audit row, in tx.
func apply(ctx context.Context, tx pgx.Tx, ch change) (*Receipt, error) {
	r := &Receipt{Status: "accepted", CustomerID: ch.customerID, Applied: Entries{Topics: []string{}, Consents: []string{}}, Stale: Entries{Topics: []string{}, Consents: []string{}}}
	if len(ch.topics) > 0 {
		topics := make([]string, 0, len(ch.topics))
		for t := range ch.topics {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		statuses := make([]string, len(topics))
		for i, t := range topics {
			statuses[i] = ch.topics[t]
		}
		rows, err := tx.Query(ctx, queries.Get("upsert-subscriptions"), ch.customerID, topics, statuses, ch.source, ch.occurredAt)
		if err != nil {
			return nil, fmt.Errorf("write subscriptions: %w", err)
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("write subscriptions: %w", err)
		}
		r.Applied.Topics, r.Stale.Topics = split(topics, applied)
	}
	if len(ch.consents) > 0 {
		purposes := make([]string, len(ch.consents))
		granted := make([]bool, len(ch.consents))
		sources := make([]string, len(ch.consents))
		for i, c := range ch.consents {
			purposes[i], granted[i], sources[i] = c.Purpose, c.Granted, c.Source
			if sources[i] == "" {
				sources[i] = ch.source
			}
		}
		rows, err := tx.Query(ctx, queries.Get("upsert-consents"), ch.customerID, purposes, granted, sources, ch.occurredAt)
		if err != nil {
			return nil, fmt.Errorf("write consents: %w", err)
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("write consents: %w", err)
		}
		sorted := slices.Sorted(slices.Values(purposes))
		r.Applied.Consents, r.Stale.Consents = split(sorted, applied)
	}
	asked := map[string]any{"topics": ch.topics, "consents": ch.consents}
	if ch.unsubscribeAll != nil {
		asked["unsubscribe_all"] = *ch.unsubscribeAll
		q, args := queries.Get("suppress"), []any{ch.email, ch.customerID, ch.source}
		if !*ch.unsubscribeAll {
			q, args = queries.Get("unsuppress"), args[:2]
		}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("write suppression: %w", err)
		}
		changed, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil {
			return nil, fmt.Errorf("write suppression: %w", err)
		}
		if len(changed) > 0 && *ch.unsubscribeAll {
			r.Suppression = "added"
		} else if len(changed) > 0 {
			r.Suppression = "removed"
		}
	}
	if len(r.Applied.Topics)+len(r.Applied.Consents)+len(r.Stale.Topics)+len(r.Stale.Consents) == 0 && r.Suppression == "" {
		return r, nil // nothing asked took effect or was refused as older: nothing to audit
	}
	changes, err := json.Marshal(asked)
	if err != nil {
		return nil, err
	}
	outcome, err := json.Marshal(map[string]any{"applied": r.Applied, "stale": r.Stale, "suppression": r.Suppression})
	if err != nil {
		return nil, err
	}
	if err := tx.QueryRow(ctx, queries.Get("insert-audit"), ch.customerID, ch.source, nilIfEmpty(ch.requestID), ch.occurredAt, changes, outcome).Scan(&r.AuditID); err != nil {
		return nil, fmt.Errorf("write audit: %w", err)
	}
	return r, nil
}

// split partitions all (sorted) into those in applied and the rest, both sorted.
func split(all, applied []string) (in, out []string) {
	in, out = []string{}, []string{}
	for _, k := range all {
		if slices.Contains(applied, k) {
			in = append(in, k)
		} else {
			out = append(out, k)
		}
	}
	return in, out
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// checkTopics refuses topics that are not in the catalogue or are archived.
func checkTopics(ctx context.Context, q Querier, topics map[string]string) error {
	if len(topics) == 0 {
		return nil
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	rows, err := q.Query(ctx, queries.Get("topics-active"), names)
	if err != nil {
		return fmt.Errorf("check topics: %w", err)
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("check topics: %w", err)
	}
	sort.Strings(names)
	for _, n := range names {
		if !slices.Contains(known, n) {
			return &ValidationError{Field: "/topics/" + n, Reason: fmt.Sprintf("unknown topic %q: it is not in the catalogue or is archived (tailor topic list)", n)}
		}
	}
	return nil
}
