package jobs

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tailor-email/tailor/internal/sqlfile"
	"github.com/tailor-email/tailor/pipeline/tracking"
	"github.com/tailor-email/tailor/templates"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// ErrCampaignNotFound is returned when no campaign has the id.
var ErrCampaignNotFound = errors.New("campaign not found")

// ErrInvalidCampaign matches every error CreateCampaign and ValidateCampaign return for input
// the user fixes (besides ErrInvalidSegment and ErrInvalidSchedule, which it also wraps).
var ErrInvalidCampaign = errors.New("invalid campaign")

// NotFoundError is a campaign id that does not exist. It matches ErrCampaignNotFound.
type NotFoundError struct{ ID int64 }

func (e *NotFoundError) Error() string { return fmt.Sprintf("campaign %d not found", e.ID) }

// Is makes errors.Is(err, ErrCampaignNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrCampaignNotFound }

// Campaign statuses. The allowed transitions are in Transitions.
const (
	StatusDraft     = "draft"     // created without a send time
	StatusScheduled = "scheduled" // waiting for its start
	StatusRunning   = "running"   // fanning out and rendering; a triggered campaign listening
	StatusPaused    = "paused"    // held: render jobs snooze until it resumes
	StatusRendered  = "rendered"  // every recipient recorded
	StatusCancelled = "cancelled" // stopped; unclaimed messages are cancelled
	StatusFailed    = "failed"    // a template fault: Error says where
)

// Campaign kinds.
const (
	KindBatch     = "batch"     // an audience scanned once
	KindTriggered = "triggered" // one recipient at a time, from the event stream
)

// Trigger makes a campaign triggered: Expr over the incoming event and the updated profile,
// a Delay before rendering, CancelIf re-checked then, and at most one message per customer
// per OncePer window.
type Trigger struct {
	Expr     string
	Delay    time.Duration
	CancelIf string
	OncePer  time.Duration
}

// Campaign is one row of campaigns.
type Campaign struct {
	ID              int64
	Name            string
	Kind            string
	TemplateName    string
	TemplateVersion int
	TemplateFiles   map[string]string
	Segment         string
	Topic           string
	SendAt          SendAt
	Timezone        string
	QuietHours      QuietHours
	Cap             Cap
	Trigger         *Trigger
	Track           tracking.Track // what the render jobs add tracking for; nothing by default
	Status          string
	AudienceCount   int
	Processed       int
	FanoutDone      bool
	Error           string
	CreatedAt       time.Time
	ScheduledAt     *time.Time
	StartedAt       *time.Time
	PausedAt        *time.Time
	FinishedAt      *time.Time
	CancelledAt     *time.Time
}

// NewCampaign is what a marketer asks for. SendAt zero makes a draft (schedule it later with
// Schedule); Trigger makes a triggered campaign (a draft until scheduled).
type NewCampaign struct {
	Name       string
	Template   *templates.Template
	Segment    string
	Topic      string
	SendAt     SendAt
	Timezone   string // default time zone of profiles without one; default UTC
	QuietHours QuietHours
	Cap        Cap
	Trigger    *Trigger
	Track      tracking.Track // engagement tracking (opens, clicks); nothing by default
}

// querier is the part of pgx (pool, connection, transaction) the read functions use.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ValidateCampaign checks everything about in that can be checked without writing: the
// segment, the trigger expressions, the time zone, the send time (against now) and, when q is
// not nil, that the topic is in the catalogue. Errors match ErrInvalidCampaign,
// ErrInvalidSegment or ErrInvalidSchedule and say what to fix.
func ValidateCampaign(ctx context.Context, q querier, in NewCampaign) error {
	if _, err := ParseSegment(in.Segment); err != nil {
		return fmt.Errorf("--segment: %w", err)
	}
	if in.Template == nil {
		return fmt.Errorf("%w: no template", ErrInvalidCampaign)
	}
	if _, err := LoadZone(in.Timezone); err != nil {
		return fmt.Errorf("--timezone: %w", err)
	}
	if t := in.Trigger; t != nil {
		if !in.SendAt.IsZero() {
			return fmt.Errorf("%w: --trigger and --send-at exclude each other: a triggered campaign sends when its trigger fires (use --delay)", ErrInvalidCampaign)
		}
		if _, err := ParseTrigger(t.Expr); err != nil {
			return fmt.Errorf("--trigger: %w", err)
		}
		if t.CancelIf != "" {
			if _, err := ParseCancelIf(t.CancelIf); err != nil {
				return fmt.Errorf("--cancel-if: %w", err)
			}
		}
		if t.Delay < 0 || t.OncePer < 0 {
			return fmt.Errorf("%w: --delay and --once-per must not be negative", ErrInvalidCampaign)
		}
	}
	if in.Topic != "" && q != nil {
		var ok bool
		if err := q.QueryRow(ctx, queries.Get("topic-active"), in.Topic).Scan(&ok); err != nil {
			return fmt.Errorf("check topic %s: %w", in.Topic, err)
		}
		if !ok {
			return fmt.Errorf("%w: --topic %q is not in the topics catalogue (or is archived)", ErrInvalidCampaign, in.Topic)
		}
	}
	return nil
}

// CreateCampaign validates the campaign, stores it with a copy of its template and, when it
// has a send time, enqueues its campaign.start job in the same transaction, so a scheduled
// campaign never exists without its job nor a job without its campaign. Without a send time
// (or with a trigger) the campaign is a draft.
func CreateCampaign(ctx context.Context, pool *pgxpool.Pool, rc *river.Client[pgx.Tx], in NewCampaign) (*Campaign, error) {
	if err := ValidateCampaign(ctx, pool, in); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = in.Template.Name()
	}
	files, err := json.Marshal(in.Template.Files())
	if err != nil {
		return nil, err
	}
	c := &Campaign{Name: name, Kind: KindBatch, TemplateName: in.Template.Name(), TemplateVersion: in.Template.Version(),
		TemplateFiles: in.Template.Files(), Segment: in.Segment, Topic: in.Topic, Timezone: cmpOr(in.Timezone, "UTC"),
		QuietHours: in.QuietHours, Cap: in.Cap, Trigger: in.Trigger, Track: in.Track, Status: StatusDraft}
	var trigger, cancelIf *string
	var delay, oncePer int64
	if t := in.Trigger; t != nil {
		c.Kind = KindTriggered
		trigger, cancelIf = &t.Expr, nullable(t.CancelIf)
		delay, oncePer = int64(t.Delay/time.Second), int64(t.OncePer/time.Second)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, queries.Get("insert-campaign"), c.Name, c.Kind, c.TemplateName, c.TemplateVersion, files, c.Segment,
			nullable(c.Topic), c.Timezone, nullable(c.QuietHours.String()), nullInt(int64(c.Cap.Count)), nullInt(int64(c.Cap.Window/time.Second)),
			trigger, delay, cancelIf, nullInt(oncePer), c.Track.Values()).Scan(&c.ID, &c.CreatedAt); err != nil {
			return fmt.Errorf("insert campaign: %w", err)
		}
		if in.SendAt.IsZero() {
			return nil
		}
		return scheduleTx(ctx, tx, rc, c.ID, in.SendAt, time.Now())
	})
	if err != nil {
		return nil, fmt.Errorf("create campaign: %w", err)
	}
	return GetCampaign(ctx, pool, c.ID)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// GetCampaign loads a campaign; an unknown id is a *NotFoundError.
func GetCampaign(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id int64) (*Campaign, error) {
	c := &Campaign{}
	var (
		files                     []byte
		topic, local, quiet       *string
		trigger, cancelIf         *string
		sendAt                    *time.Time
		capCount                  *int32
		capWindow, delay, oncePer *int64
		track                     []string
	)
	err := q.QueryRow(ctx, queries.Get("get-campaign"), id).Scan(&c.ID, &c.Name, &c.Kind, &c.TemplateName, &c.TemplateVersion, &files,
		&c.Segment, &topic, &sendAt, &local, &c.Timezone, &quiet, &capCount, &capWindow, &trigger, &delay, &cancelIf, &oncePer, &track,
		&c.Status, &c.AudienceCount, &c.Processed, &c.FanoutDone, &c.Error,
		&c.CreatedAt, &c.ScheduledAt, &c.StartedAt, &c.PausedAt, &c.FinishedAt, &c.CancelledAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("get campaign %d: %w", id, err)
	}
	if err := json.Unmarshal(files, &c.TemplateFiles); err != nil {
		return nil, fmt.Errorf("campaign %d: template files: %w", id, err)
	}
	if topic != nil {
		c.Topic = *topic
	}
	if c.Track, err = tracking.TrackOf(track); err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	if sendAt != nil {
		c.SendAt.At = *sendAt
	}
	if local != nil {
		c.SendAt.Local = *local
	}
	if quiet != nil {
		c.QuietHours, _ = ParseQuietHours(*quiet)
	}
	if capCount != nil && capWindow != nil {
		c.Cap = Cap{Count: int(*capCount), Window: time.Duration(*capWindow) * time.Second}
	}
	if trigger != nil {
		c.Trigger = &Trigger{Expr: *trigger, Delay: time.Duration(*delay) * time.Second}
		if cancelIf != nil {
			c.Trigger.CancelIf = *cancelIf
		}
		if oncePer != nil {
			c.Trigger.OncePer = time.Duration(*oncePer) * time.Second
		}
	}
	return c, nil
}

// CampaignSummary is one line of `tailor campaign list`.
type CampaignSummary struct {
	ID                        int64
	Name, Template, Kind      string
	Status                    string
	Audience                  int
	Rendered, Excluded, Other int
	SendAt                    string
	CreatedAt                 time.Time
}

// ListCampaigns returns the newest campaigns first, with their counters.
func ListCampaigns(ctx context.Context, pool *pgxpool.Pool, limit int) ([]CampaignSummary, error) {
	rows, err := pool.Query(ctx, queries.Get("list-campaigns"), limit)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CampaignSummary, error) {
		var s CampaignSummary
		var at *time.Time
		var local *string
		err := r.Scan(&s.ID, &s.Name, &s.Template, &s.Kind, &s.Status, &s.Audience, &at, &local, &s.CreatedAt, &s.Rendered, &s.Excluded, &s.Other)
		switch {
		case local != nil:
			s.SendAt = "local:" + *local
		case at != nil:
			s.SendAt = at.UTC().Format(time.RFC3339)
		}
		return s, err
	})
}

// Message is one rendered_messages row: a rendered message, or a recipient left out (status
// excluded, skipped or failed, with the reason).
type Message struct {
	ID         int64
	CampaignID int64
	CustomerID string
	Email      string
	Status     string
	Subject    string
	Preheader  string
	HTML       string
	Text       string
	Headers    json.RawMessage
	Provenance json.RawMessage
	Variant    string
	Reason     string
	NotBefore  time.Time
	Occurrence string
	CreatedAt  time.Time
}

// ListMessages pages through a campaign's messages by id (keyset pagination: pass the last id
// seen as after). An unknown campaign is a *NotFoundError.
func ListMessages(ctx context.Context, pool *pgxpool.Pool, campaignID, after int64, limit int) ([]Message, error) {
	if after == 0 {
		var exists bool
		if err := pool.QueryRow(ctx, queries.Get("campaign-exists"), campaignID).Scan(&exists); err != nil {
			return nil, fmt.Errorf("list messages: %w", err)
		}
		if !exists {
			return nil, &NotFoundError{ID: campaignID}
		}
	}
	rows, err := pool.Query(ctx, queries.Get("list-messages"), campaignID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) {
		var m Message
		err := r.Scan(&m.ID, &m.CampaignID, &m.CustomerID, &m.Email, &m.Status, &m.Subject, &m.Preheader, &m.HTML, &m.Text,
			&m.Headers, &m.Provenance, &m.Variant, &m.Reason, &m.NotBefore, &m.Occurrence, &m.CreatedAt)
		return m, err
	})
}

// Settled reports whether a campaign has stopped changing by itself: rendered, cancelled,
// failed, a draft, or paused. A running triggered campaign never settles.
func (c *Campaign) Settled() bool {
	switch c.Status {
	case StatusScheduled, StatusRunning:
		return false
	}
	return true
}

// WaitCampaign polls until the campaign settles (see Settled) or ctx ends.
func WaitCampaign(ctx context.Context, pool *pgxpool.Pool, id int64) (*Campaign, error) {
	delay := 20 * time.Millisecond
	for {
		c, err := GetCampaign(ctx, pool, id)
		if err != nil {
			return nil, err
		}
		if c.Settled() {
			return c, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return c, fmt.Errorf("campaign %d still %s: %w", id, c.Status, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
