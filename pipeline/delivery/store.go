package delivery

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tailor-email/tailor/internal/sqlfile"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/preferences"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// Store limits.
const (
	// LeaseMax is the longest lease a claim may ask for.
	LeaseMax = 12 * time.Hour
	// RetryAfterMax is the longest delay a retry may ask for.
	RetryAfterMax = 7 * 24 * time.Hour
	// MaxReplyBytes bounds an outcome's Reply and Reason.
	MaxReplyBytes = 2000
	// MaxProviderIDBytes bounds an outcome's ProviderID.
	MaxProviderIDBytes = 256
	// MaxReceiptBytes bounds a receipt as a sender sends it back.
	MaxReceiptBytes = 128
)

// ReasonTopicArchived is the claim-time reason of a message whose campaign's topic was
// archived after rendering: nobody can be checked against it, so nobody gets it.
const ReasonTopicArchived = "topic_archived"

// Errors of the store.
var (
	// ErrMessageNotFound: no rendered message has the id.
	ErrMessageNotFound = errors.New("message not found")
	// ErrInvalidClaim and ErrInvalidOutcome match the *RequestError of a claim or an ack the
	// caller must change.
	ErrInvalidClaim   = errors.New("invalid claim")
	ErrInvalidOutcome = errors.New("invalid outcome")
)

// RequestError is a claim or an outcome that cannot be taken as it is: Field names what to
// fix ("limit", "outcomes[3].status"). It matches ErrInvalidClaim or ErrInvalidOutcome.
type RequestError struct {
	Field  string
	Reason string
	kind   error
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidClaim) (or ErrInvalidOutcome) true.
func (e *RequestError) Unwrap() error { return e.kind }

// ClaimRequest asks for ready messages.
type ClaimRequest struct {
	// Limit is how many messages at most: 1 to ClaimBatchMax.
	Limit int
	// Lease is how long they stay the caller's: 1 s to LeaseMax.
	Lease time.Duration
	// CampaignID narrows the claim to one campaign; 0: any.
	CampaignID int64
}

// Validate checks r; errors are *RequestError matching ErrInvalidClaim.
func (r ClaimRequest) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &RequestError{Field: field, Reason: fmt.Sprintf(format, args...), kind: ErrInvalidClaim}
	}
	switch {
	case r.Limit < 1 || r.Limit > ClaimBatchMax:
		return bad("limit", "%d: want 1 to %d", r.Limit, ClaimBatchMax)
	case r.Lease < time.Second || r.Lease > LeaseMax:
		return bad("lease_seconds", "%v: want 1 to %d seconds", r.Lease, int(LeaseMax/time.Second))
	case r.CampaignID < 0:
		return bad("campaign", "%d: want a campaign id, or none for any campaign", r.CampaignID)
	}
	return nil
}

// AckResult says what became of one outcome.
type AckResult string

// Ack results.
const (
	AckAccepted  AckResult = "acked"     // recorded
	AckDuplicate AckResult = "duplicate" // the same outcome was already recorded under this receipt: nothing changed
	AckStale     AckResult = "stale"     // the receipt is not the message's current one (its lease expired and it was claimed again)
	AckConflict  AckResult = "conflict"  // another outcome was already recorded under this receipt
	AckNotFound  AckResult = "not_found" // no such message
)

// AckOutcome is the store's answer for one outcome, in the order they were given.
type AckOutcome struct {
	MessageID int64     `json:"id"`
	Result    AckResult `json:"result"`
	Reason    string    `json:"reason,omitempty"`
}

// statusExported is the final state of a message handed to a batch sender by Export; it is
// no outcome a sender may ack.
const statusExported Status = "exported"

// StoreConfig configures a Store. Zero values mean defaults.
type StoreConfig struct {
	// DB is the Postgres pool. Required.
	DB *pgxpool.Pool
	// Now is the store's clock: send times, leases and retries are compared with it. Default
	// time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Store is the claim / lease / ack store over rendered_messages, with SQS-like semantics:
//
//   - Claim hands out ready messages (rendered, not delivered, send time and retry time
//     reached, no live lease, campaign running or rendered), each with a fresh receipt and a
//     lease; FOR UPDATE SKIP LOCKED, so concurrent claims never overlap. In the same
//     transaction every recipient is checked again against Postgres (preferences.Check:
//     suppression, topic subscription, consent): the ineligible are marked suppressed with
//     the reason and never handed out.
//   - A message is handed out again only after its lease expired or a retry ack's delay.
//   - Ack takes one outcome per message under its current receipt only: a stale receipt is
//     refused for that message alone; a repeated ack (same receipt, same outcome) is a no-op.
//     Hard bounces and complaints join the suppression list, and every outcome's event
//     (email_sent with the provider's id, email_bounced with hard/soft and the reply,
//     email_complained, email_failed with the reason, email_deferred for a retry with the
//     reply) is put in the outbox in the ack's transaction (Outbox publishes it); a message
//     held back at claim is an email_suppressed event with the reason.
//
// A Store is safe for concurrent use by any number of processes.
type Store struct {
	db  *pgxpool.Pool
	now func() time.Time
	log *slog.Logger
}

// NewStore checks cfg and returns the store.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.DB == nil {
		return nil, errors.New("delivery: StoreConfig.DB is required")
	}
	s := &Store{db: cfg.DB, now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// claimed is a claimed row before the re-check.
type claimed struct {
	m     Message
	topic string
}

// Claim leases up to r.Limit ready messages (see Store). Fewer, or none, is no error.
func (s *Store) Claim(ctx context.Context, r ClaimRequest) ([]Message, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var out []Message
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		out = nil
		now := s.now()
		rows, err := tx.Query(ctx, queries.Get("claim"), now, r.Limit, r.CampaignID, r.Lease.Milliseconds())
		if err != nil {
			return err
		}
		var got []claimed
		var headers []byte
		var c claimed
		_, err = pgx.ForEachRow(rows, []any{&c.m.ID, &c.m.CampaignID, &c.m.CustomerID, &c.m.Email, &c.m.Subject, &c.m.Preheader,
			&c.m.HTML, &c.m.Text, &headers, &c.m.Attempt, &c.m.Receipt, &c.m.LeaseExpires, &c.topic, &c.m.Name}, func() error {
			c.m.Attempt-- // earlier hand-outs
			c.m.Headers = nil
			if len(headers) > 2 { // not "{}"
				if err := json.Unmarshal(headers, &c.m.Headers); err != nil {
					return fmt.Errorf("message %d: headers: %w", c.m.ID, err)
				}
			}
			got = append(got, c)
			c = claimed{}
			return nil
		})
		if err != nil {
			return err
		}
		reasons, err := recheck(ctx, tx, got)
		if err != nil {
			return err
		}
		if len(reasons) > 0 {
			ids := make([]int64, 0, len(reasons))
			why := make([]string, 0, len(reasons))
			for id, reason := range reasons {
				ids, why = append(ids, id), append(why, reason)
				claimSuppressed.WithLabelValues(reason).Inc()
			}
			batch := &pgx.Batch{}
			batch.Queue(queries.Get("suppress-claimed"), now, ids, why)
			if err := queueEvents(batch, suppressedEvents(got, reasons, now)); err != nil {
				return err
			}
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return fmt.Errorf("mark suppressed: %w", err)
			}
		}
		for _, c := range got {
			if _, left := reasons[c.m.ID]; !left {
				out = append(out, c.m)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim messages: %w", err)
	}
	claimsTotal.Inc()
	messagesClaimed.Add(float64(len(out)))
	return out, nil
}

// suppressedEvents are the email_suppressed events of the claimed messages that reasons
// hold back, in claim order.
func suppressedEvents(got []claimed, reasons map[int64]string, now time.Time) []events.Event {
	var evs []events.Event
	for _, c := range got {
		if reason, ok := reasons[c.m.ID]; ok {
			ev := messageEvent(c.m.ID, c.m.CampaignID, c.m.Attempt+1, c.m.CustomerID, statusSuppressed, now)
			ev.Properties.Reason = eventReason(reason)
			evs = append(evs, ev)
		}
	}
	return evs
}

// recheck returns, by message id, why a claimed message may not go out: preferences.Check
// per campaign topic, in the claim's transaction.
func recheck(ctx context.Context, tx pgx.Tx, got []claimed) (map[int64]string, error) {
	byTopic := map[string][]int{}
	for i, c := range got {
		byTopic[c.topic] = append(byTopic[c.topic], i)
	}
	out := map[int64]string{}
	for topic, idx := range byTopic {
		rs := make([]preferences.Recipient, 0, len(idx))
		ids := make(map[string][]int64, len(idx)) // a customer may have two messages (occurrences)
		for _, i := range idx {
			rs = append(rs, preferences.Recipient{CustomerID: got[i].m.CustomerID, Email: got[i].m.Email})
			ids[got[i].m.CustomerID] = append(ids[got[i].m.CustomerID], got[i].m.ID)
		}
		reasons, err := preferences.Check(ctx, tx, topic, rs)
		if errors.Is(err, preferences.ErrUnknownTopic) {
			for _, i := range idx {
				out[got[i].m.ID] = ReasonTopicArchived
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		for customer, reason := range reasons {
			for _, id := range ids[customer] {
				out[id] = reason
			}
		}
	}
	return out, nil
}

// ValidateOutcome checks one outcome as a sender sends it; field prefixes the error's Field
// (e.g. "outcomes[3]"). Errors are *RequestError matching ErrInvalidOutcome.
func ValidateOutcome(field string, o Outcome) error {
	bad := func(f, format string, args ...any) error {
		return &RequestError{Field: field + "." + f, Reason: fmt.Sprintf(format, args...), kind: ErrInvalidOutcome}
	}
	switch {
	case o.MessageID <= 0:
		return bad("id", "want the message's id")
	case o.Receipt == "" || len(o.Receipt) > MaxReceiptBytes:
		return bad("receipt", "want the receipt of the claim (at most %d bytes)", MaxReceiptBytes)
	case len(o.ProviderID) > MaxProviderIDBytes:
		return bad("provider_id", "%d bytes, at most %d", len(o.ProviderID), MaxProviderIDBytes)
	case len(o.Reply) > MaxReplyBytes:
		return bad("reply", "%d bytes, at most %d", len(o.Reply), MaxReplyBytes)
	case len(o.Reason) > MaxReplyBytes:
		return bad("reason", "%d bytes, at most %d", len(o.Reason), MaxReplyBytes)
	case o.RetryAfter < 0 || o.RetryAfter > RetryAfterMax:
		return bad("retry_after", "%v: want 0 to %v", o.RetryAfter, RetryAfterMax)
	case o.RetryAfter > 0 && o.Status != StatusRetry:
		return bad("retry_after", "only a retry waits")
	case o.Bounce != "" && o.Status != StatusBounced:
		return bad("bounce", "only a bounce is hard or soft")
	}
	switch o.Status {
	case StatusSent, StatusComplained, StatusFailed, StatusRetry:
	case StatusBounced:
		if o.Bounce != BounceHard && o.Bounce != BounceSoft {
			return bad("bounce", "%q: a bounce is hard or soft", o.Bounce)
		}
	default:
		return bad("status", "%q: want sent, bounced, complained, failed or retry", o.Status)
	}
	return nil
}

// Ack records outcomes (see Store) and returns one result per outcome, in order. An outcome
// that is refused (stale, conflicting, unknown) does not fail the others; err is for outcomes
// that cannot be taken at all (a *RequestError: ErrInvalidOutcome, a message twice) and for
// Postgres, in which case nothing was recorded. Safe to call again with the same outcomes.
func (s *Store) Ack(ctx context.Context, outcomes []Outcome) ([]AckOutcome, error) {
	seen := make(map[int64]bool, len(outcomes))
	for i, o := range outcomes {
		field := "outcomes[" + strconv.Itoa(i) + "]"
		if err := ValidateOutcome(field, o); err != nil {
			return nil, err
		}
		if seen[o.MessageID] {
			return nil, &RequestError{Field: field + ".id", Reason: fmt.Sprintf("message %d appears twice: one outcome per message", o.MessageID), kind: ErrInvalidOutcome}
		}
		seen[o.MessageID] = true
	}
	return s.ack(ctx, outcomes)
}

// acked is a row an ack changed.
type acked struct {
	id, campaign                 int64
	customer, email              string
	attempts                     int
	status                       Status
	bounce, reply, why, provider string
}

func (s *Store) ack(ctx context.Context, outcomes []Outcome) ([]AckOutcome, error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	n := len(outcomes)
	ids := make([]int64, n)
	receipts, statuses, bounces, providers, replies, reasons := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	retry := make([]int64, n)
	for i, o := range outcomes {
		ids[i], receipts[i], statuses[i], bounces[i] = o.MessageID, o.Receipt, string(o.Status), string(o.Bounce)
		providers[i], replies[i], reasons[i], retry[i] = o.ProviderID, o.Reply, o.Reason, o.RetryAfter.Milliseconds()
	}
	results := make([]AckOutcome, n)
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		now := s.now()
		if _, err := tx.Exec(ctx, queries.Get("lock-acked"), ids); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		rows, err := tx.Query(ctx, queries.Get("ack"), ids, receipts, statuses, bounces, providers, replies, reasons, retry, now)
		if err != nil {
			return err
		}
		byID := make(map[int64]int, n)
		for i, o := range outcomes {
			byID[o.MessageID] = i
		}
		var changed []acked
		var a acked
		_, err = pgx.ForEachRow(rows, []any{&a.id, &a.campaign, &a.customer, &a.email, &a.attempts}, func() error {
			o := outcomes[byID[a.id]]
			a.status, a.bounce, a.reply, a.why, a.provider = o.Status, string(o.Bounce), o.Reply, o.Reason, o.ProviderID
			changed = append(changed, a)
			results[byID[a.id]] = AckOutcome{MessageID: a.id, Result: AckAccepted}
			return nil
		})
		if err != nil {
			return err
		}
		if len(changed) < n {
			if err := s.classify(ctx, tx, outcomes, results); err != nil {
				return err
			}
		}
		return s.afterAck(ctx, tx, now, changed)
	})
	if err != nil {
		return nil, fmt.Errorf("ack outcomes: %w", err)
	}
	for i, r := range results {
		switch r.Result {
		case AckAccepted:
			acksTotal.WithLabelValues(string(outcomes[i].Status)).Inc()
		default:
			acksRefused.WithLabelValues(string(r.Result)).Inc()
		}
	}
	return results, nil
}

// classify explains the outcomes the ack did not take.
func (s *Store) classify(ctx context.Context, tx pgx.Tx, outcomes []Outcome, results []AckOutcome) error {
	var ids []int64
	for i, r := range results {
		if r.Result == "" {
			ids = append(ids, outcomes[i].MessageID)
		}
	}
	rows, err := tx.Query(ctx, queries.Get("ack-state"), ids)
	if err != nil {
		return fmt.Errorf("ack state: %w", err)
	}
	type state struct {
		receipt, last, status string
		leased                bool
	}
	states := map[int64]state{}
	var id int64
	var st state
	if _, err := pgx.ForEachRow(rows, []any{&id, &st.receipt, &st.leased, &st.last, &st.status}, func() error {
		states[id] = st
		return nil
	}); err != nil {
		return fmt.Errorf("ack state: %w", err)
	}
	for i, r := range results {
		if r.Result != "" {
			continue
		}
		o := outcomes[i]
		st, ok := states[o.MessageID]
		res := AckOutcome{MessageID: o.MessageID}
		switch {
		case !ok:
			res.Result, res.Reason = AckNotFound, "no such message"
		case st.receipt != o.Receipt && st.receipt == "":
			res.Result, res.Reason = AckStale, "the message was never claimed"
		case st.receipt != o.Receipt:
			res.Result, res.Reason = AckStale, "the receipt is not the current one: the lease expired and the message was claimed again"
		case st.last == string(o.Status):
			res.Result, res.Reason = AckDuplicate, "already acked as "+st.last
		case st.last != "":
			res.Result, res.Reason = AckConflict, "already acked as "+st.last+" under this receipt"
		default:
			res.Result, res.Reason = AckConflict, "the message is "+st.status+", not leased"
		}
		results[i] = res
	}
	return nil
}

// afterAck puts the outcomes' events in the outbox and the hard bounces' and complaints'
// addresses on the suppression list, in the ack's transaction (one round trip).
func (s *Store) afterAck(ctx context.Context, tx pgx.Tx, now time.Time, changed []acked) error {
	evs := make([]events.Event, 0, len(changed))
	var emails, customers, why, details []string
	suppressed := map[string]bool{}
	for _, a := range changed {
		ev := messageEvent(a.id, a.campaign, a.attempts, a.customer, a.status, now)
		switch a.status {
		case StatusSent:
			ev.Properties.ProviderID = a.provider
		case StatusBounced:
			ev.Properties.Bounce, ev.Properties.Reason = a.bounce, eventReason(a.reply)
		case StatusRetry:
			ev.Properties.Reason = eventReason(a.reply)
		case StatusFailed:
			ev.Properties.Reason = eventReason(cmp.Or(a.why, a.reply))
		}
		evs = append(evs, ev)
		reason := ""
		switch {
		case a.status == StatusBounced && a.bounce == string(BounceHard):
			reason = "hard_bounce"
		case a.status == StatusComplained:
			reason = "complaint"
		}
		if addr := strings.ToLower(strings.TrimSpace(a.email)); reason != "" && !suppressed[addr] {
			suppressed[addr] = true
			emails, customers, why = append(emails, addr), append(customers, a.customer), append(why, reason)
			details = append(details, fmt.Sprintf("campaign %d message %d: %s", a.campaign, a.id, cmp.Or(a.reply, a.why)))
		}
	}
	batch := &pgx.Batch{}
	if err := queueEvents(batch, evs); err != nil {
		return err
	}
	if len(emails) > 0 {
		batch.Queue(queries.Get("suppress-addresses"), emails, customers, why, details)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("events and suppressions: %w", err)
	}
	return nil
}

// messageEvent is the stream event of one message's outcome (or its suppression at claim),
// with the campaign and message ids; the caller adds the outcome's detail.
func messageEvent(id, campaign int64, attempts int, customer string, s Status, now time.Time) events.Event {
	return events.Event{
		// One id per hand-out and outcome: a re-published event is a duplicate downstream.
		EventID:    fmt.Sprintf("msg-%d-%d-%s", id, attempts, s),
		CustomerID: customer, Type: eventTypes[s], Timestamp: now.UTC(),
		Properties: events.Properties{CampaignID: strconv.FormatInt(campaign, 10), MessageID: strconv.FormatInt(id, 10)},
	}
}

// eventTypes are the stream events of the outcomes: every ack, final or a retry, and the
// suppression at claim.
var eventTypes = map[Status]string{
	StatusSent:       events.TypeEmailSent,
	StatusBounced:    events.TypeEmailBounced,
	StatusComplained: events.TypeEmailComplained,
	StatusFailed:     events.TypeEmailFailed,
	StatusRetry:      events.TypeEmailDeferred,
	statusSuppressed: events.TypeEmailSuppressed,
}

// eventReason is a reply or reason as an event carries it: valid UTF-8 (a provider's reply
// may not be) of at most events.MaxStringLen bytes, cut at a character boundary.
func eventReason(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	if len(s) <= events.MaxStringLen {
		return s
	}
	cut := events.MaxStringLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// queueEvents queues the outbox insert of evs on batch.
func queueEvents(batch *pgx.Batch, evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	keys := make([]string, len(evs))
	payloads := make([][]byte, len(evs))
	for i, ev := range evs {
		r, err := events.Record(ev)
		if err != nil {
			return fmt.Errorf("event %s: %w", ev.EventID, err)
		}
		keys[i], payloads[i] = r.PartitionKey, r.Data
	}
	batch.Queue(queries.Get("outbox-insert"), keys, payloads)
	return nil
}

// Source returns the store as a Relay's Source, claiming from one campaign (0: any). Its Ack
// logs the outcomes the store refused (their messages went to another sender) and fails only
// when nothing could be recorded.
func (s *Store) Source(campaignID int64) Source { return &storeSource{s: s, campaign: campaignID} }

type storeSource struct {
	s        *Store
	campaign int64
}

func (ss *storeSource) Claim(ctx context.Context, limit int, lease time.Duration) ([]Message, error) {
	return ss.s.Claim(ctx, ClaimRequest{Limit: limit, Lease: lease, CampaignID: ss.campaign})
}

func (ss *storeSource) Ack(ctx context.Context, outcomes []Outcome) error {
	res, err := ss.s.Ack(ctx, outcomes)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Result != AckAccepted && r.Result != AckDuplicate {
			ss.s.log.Warn("delivery: outcome refused", "message", r.MessageID, "result", r.Result, "reason", r.Reason)
		}
	}
	return nil
}

// State is where a message is on its way: the render outcome for a recipient left out
// (excluded, skipped, failed, cancelled), else the delivery state.
type State string

// Delivery states of a rendered message.
const (
	StateScheduled  State = "scheduled"  // its send time has not come
	StateReady      State = "ready"      // claimable (when its campaign is running or rendered)
	StateHeld       State = "held"       // ready, but its campaign is paused, cancelled or failed
	StateLeased     State = "leased"     // claimed; the lease stands
	StateRetrying   State = "retrying"   // acked retry: ready again at RetryAt
	StateSent       State = "sent"       // final states: the delivery column
	StateBounced    State = "bounced"    //
	StateComplained State = "complained" //
	StateFailed     State = "failed"     //
	StateSuppressed State = "suppressed" // left out at claim: Reason says why
	StateExported   State = "exported"   // handed to a batch sender by tailor messages export
)

// MessageState is a message's delivery record, without its body.
type MessageState struct {
	ID         int64  `json:"id"`
	CampaignID int64  `json:"campaign_id"`
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
	// Status is the render outcome: rendered, or excluded, skipped, failed, cancelled.
	Status string `json:"status"`
	// State is the delivery state of a rendered message, else the Status.
	State      State      `json:"state"`
	NotBefore  time.Time  `json:"not_before"`
	Attempts   int        `json:"attempts"`
	ClaimedAt  *time.Time `json:"claimed_at,omitempty"`
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
	RetryAt    *time.Time `json:"retry_at,omitempty"`
	// Outcome is the last ack's: sent, bounced, complained, failed, retry ("" before one).
	Outcome    string     `json:"outcome,omitempty"`
	Bounce     string     `json:"bounce,omitempty"`
	ProviderID string     `json:"provider_id,omitempty"`
	Reply      string     `json:"reply,omitempty"`
	Reason     string     `json:"reason,omitempty"` // the render's, the claim's or the ack's reason
	AckedAt    *time.Time `json:"acked_at,omitempty"`
	// BodySHA256 is the hex SHA-256 of html, a NUL and text (kept after BodyDeletedAt).
	BodySHA256    string     `json:"body_sha256,omitempty"`
	BodyDeletedAt *time.Time `json:"body_deleted_at,omitempty"`
}

// Get returns a message's delivery record; an unknown id is ErrMessageNotFound.
func (s *Store) Get(ctx context.Context, id int64) (*MessageState, error) {
	m := &MessageState{}
	var renderReason, delivery, deliveryReason, campaignStatus string
	var hash []byte
	err := s.db.QueryRow(ctx, queries.Get("message"), id).Scan(&m.ID, &m.CampaignID, &m.CustomerID, &m.Email, &m.Status, &renderReason,
		&m.NotBefore, &delivery, &m.Attempts, &m.ClaimedAt, &m.LeaseUntil, &m.RetryAt, &m.Outcome, &m.Bounce, &m.ProviderID, &m.Reply,
		&deliveryReason, &m.AckedAt, &hash, &m.BodyDeletedAt, &campaignStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", id, ErrMessageNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get message %d: %w", id, err)
	}
	if len(hash) > 0 {
		m.BodySHA256 = fmt.Sprintf("%x", hash)
	}
	m.Reason = cmp.Or(deliveryReason, renderReason)
	now := s.now()
	switch {
	case m.Status != "rendered":
		m.State = State(m.Status)
	case delivery != "":
		m.State = State(delivery)
	case m.LeaseUntil != nil && m.LeaseUntil.After(now):
		m.State = StateLeased
	case m.RetryAt != nil && m.RetryAt.After(now):
		m.State = StateRetrying
	case m.NotBefore.After(now):
		m.State = StateScheduled
	case campaignStatus != "running" && campaignStatus != "rendered":
		m.State = StateHeld
	default:
		m.State = StateReady
	}
	return m, nil
}

// Counts are a campaign's rendered messages by delivery state.
type Counts struct {
	Scheduled   int `json:"scheduled"` // send time not reached
	Ready       int `json:"ready"`     // claimable (if the campaign is running or rendered)
	Leased      int `json:"leased"`
	Retrying    int `json:"retrying"`
	Sent        int `json:"sent"`
	BouncedHard int `json:"bounced_hard"`
	BouncedSoft int `json:"bounced_soft"`
	Complained  int `json:"complained"`
	Failed      int `json:"failed"`
	Suppressed  int `json:"suppressed"` // left out by the claim-time re-check
	Exported    int `json:"exported"`
}

// Delivered is how many messages have a final state.
func (c Counts) Delivered() int {
	return c.Sent + c.BouncedHard + c.BouncedSoft + c.Complained + c.Failed + c.Suppressed + c.Exported
}

// Querier is the part of pgx (pool, connection, transaction) Counts uses.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CampaignCounts counts a campaign's rendered messages by delivery state, as of now (one pass
// over the campaign's messages: for status displays, not for every batch). An unknown
// campaign has no messages: all zero.
func CampaignCounts(ctx context.Context, q Querier, campaignID int64) (Counts, error) {
	return countsAt(ctx, q, campaignID, time.Now())
}

func countsAt(ctx context.Context, q Querier, campaignID int64, now time.Time) (Counts, error) {
	var c Counts
	err := q.QueryRow(ctx, queries.Get("counts"), campaignID, now).Scan(&c.Scheduled, &c.Ready, &c.Leased, &c.Retrying, &c.Sent,
		&c.BouncedHard, &c.BouncedSoft, &c.Complained, &c.Failed, &c.Suppressed, &c.Exported)
	if err != nil {
		return c, fmt.Errorf("delivery counts of campaign %d: %w", campaignID, err)
	}
	return c, nil
}

// Counts is CampaignCounts at the store's clock.
func (s *Store) Counts(ctx context.Context, campaignID int64) (Counts, error) {
	return countsAt(ctx, s.db, campaignID, s.now())
}

// ErrCampaignNotFound: no campaign has the id.
var ErrCampaignNotFound = errors.New("campaign not found")

// CampaignDone says whether a campaign has nothing left for senders: it finished rendering
// and every message has a final state, or it was cancelled or failed (nothing more will be
// claimable; what senders hold they may still ack). An unknown id is ErrCampaignNotFound.
func (s *Store) CampaignDone(ctx context.Context, campaignID int64) (bool, error) {
	var status string
	var pending bool
	err := s.db.QueryRow(ctx, queries.Get("campaign-pending"), campaignID).Scan(&status, &pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("campaign %d: %w", campaignID, ErrCampaignNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("campaign %d: %w", campaignID, err)
	}
	switch status {
	case "cancelled", "failed":
		return true, nil
	case "rendered":
		return !pending, nil
	}
	return false, nil
}

// DeleteBodies deletes the HTML and text of up to limit messages whose final ack (or
// claim-time suppression) is older than ackedBefore, keeping their metadata and body_sha256,
// and stamps body_deleted_at with now. It returns how many it deleted; call it again until
// that is below limit. Safe to run in several processes at once (SKIP LOCKED).
func DeleteBodies(ctx context.Context, db BatchSender, ackedBefore, now time.Time, limit int) (int64, error) {
	if limit < 1 {
		return 0, errors.New("delivery: DeleteBodies: limit must be positive")
	}
	batch := &pgx.Batch{}
	batch.Queue(queries.Get("delete-bodies"), ackedBefore, limit, now)
	res := db.SendBatch(ctx, batch)
	tag, err := res.Exec()
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("delivery: delete bodies: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ExportLease is how long Export holds a batch while it is written out.
const ExportLease = 10 * time.Minute

// Export hands a campaign's ready messages to a batch sender: it claims them a batch at a
// time (the claim's semantics: paused and cancelled campaigns give nothing, the recipients
// are checked again and the ineligible suppressed), passes each batch to write, and marks
// the batch exported (a final state) once write returned nil. When write fails, nothing of
// that batch is marked and its messages come back after ExportLease. It returns how many
// messages were exported.
func (s *Store) Export(ctx context.Context, campaignID int64, batch int, write func([]Message) error) (int, error) {
	if campaignID <= 0 {
		return 0, &RequestError{Field: "campaign", Reason: "want a campaign id", kind: ErrInvalidClaim}
	}
	total := 0
	for {
		msgs, err := s.Claim(ctx, ClaimRequest{Limit: batch, Lease: ExportLease, CampaignID: campaignID})
		if err != nil {
			return total, err
		}
		if len(msgs) == 0 {
			return total, nil
		}
		if err := write(msgs); err != nil {
			return total, err
		}
		ids := make([]int64, len(msgs))
		receipts := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i], receipts[i] = m.ID, m.Receipt
		}
		tag, err := s.db.Exec(ctx, queries.Get("mark-exported"), s.now(), ids, receipts)
		if err != nil {
			return total, fmt.Errorf("mark exported: %w", err)
		}
		acksTotal.WithLabelValues(string(statusExported)).Add(float64(tag.RowsAffected()))
		total += int(tag.RowsAffected())
	}
}
