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
	"github.com/tailor-email/tailor/templates"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// ErrCampaignNotFound is returned when no campaign has the id.
var ErrCampaignNotFound = errors.New("campaign not found")

// Campaign statuses.
const (
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusRendered  = "rendered"
	StatusFailed    = "failed"
)

// Campaign is one row of campaigns.
type Campaign struct {
	ID              int64
	Name            string
	TemplateName    string
	TemplateVersion int
	TemplateFiles   map[string]string
	Segment         string
	Status          string
	AudienceCount   int
	FanoutDone      bool
	Error           string
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
}

// NewCampaign is what a marketer asks for.
type NewCampaign struct {
	Name     string
	Template *templates.Template
	Segment  string
}

// CreateCampaign validates the segment, stores the campaign with a copy of its template, and
// enqueues its campaign.start job in the same transaction, so a campaign never exists without
// its job nor a job without its campaign.
func CreateCampaign(ctx context.Context, pool *pgxpool.Pool, rc *river.Client[pgx.Tx], in NewCampaign) (*Campaign, error) {
	if _, err := ParseSegment(in.Segment); err != nil {
		return nil, err
	}
	if in.Template == nil {
		return nil, errors.New("campaign: no template")
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = in.Template.Name()
	}
	files, err := json.Marshal(in.Template.Files())
	if err != nil {
		return nil, err
	}
	c := &Campaign{Name: name, TemplateName: in.Template.Name(), TemplateVersion: in.Template.Version(),
		TemplateFiles: in.Template.Files(), Segment: in.Segment, Status: StatusScheduled}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, queries.Get("insert-campaign"), c.Name, c.TemplateName, c.TemplateVersion, files, c.Segment).
			Scan(&c.ID, &c.CreatedAt); err != nil {
			return fmt.Errorf("insert campaign: %w", err)
		}
		if _, err := rc.InsertTx(ctx, tx, CampaignStartArgs{CampaignID: c.ID}, nil); err != nil {
			return fmt.Errorf("enqueue campaign.start: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create campaign: %w", err)
	}
	return c, nil
}

// GetCampaign loads a campaign.
func GetCampaign(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id int64) (*Campaign, error) {
	c := &Campaign{}
	var files []byte
	err := q.QueryRow(ctx, queries.Get("get-campaign"), id).Scan(&c.ID, &c.Name, &c.TemplateName, &c.TemplateVersion, &files,
		&c.Segment, &c.Status, &c.AudienceCount, &c.FanoutDone, &c.Error, &c.CreatedAt, &c.StartedAt, &c.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %d", ErrCampaignNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get campaign %d: %w", id, err)
	}
	if err := json.Unmarshal(files, &c.TemplateFiles); err != nil {
		return nil, fmt.Errorf("campaign %d: template files: %w", id, err)
	}
	return c, nil
}

// CampaignSummary is one line of `tailor campaign list`.
type CampaignSummary struct {
	ID                int64
	Name, Template    string
	Status            string
	Audience          int
	Rendered, Skipped int
	CreatedAt         time.Time
}

// ListCampaigns returns the newest campaigns first.
func ListCampaigns(ctx context.Context, pool *pgxpool.Pool, limit int) ([]CampaignSummary, error) {
	rows, err := pool.Query(ctx, queries.Get("list-campaigns"), limit)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CampaignSummary, error) {
		var s CampaignSummary
		err := r.Scan(&s.ID, &s.Name, &s.Template, &s.Status, &s.Audience, &s.CreatedAt, &s.Rendered, &s.Skipped)
		return s, err
	})
}

// Message is one rendered_messages row.
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
	Provenance json.RawMessage
	Reason     string
	CreatedAt  time.Time
}

// ListMessages pages through a campaign's messages by id (keyset pagination: pass the last id
// seen as after).
func ListMessages(ctx context.Context, pool *pgxpool.Pool, campaignID, after int64, limit int) ([]Message, error) {
	rows, err := pool.Query(ctx, queries.Get("list-messages"), campaignID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) {
		var m Message
		err := r.Scan(&m.ID, &m.CampaignID, &m.CustomerID, &m.Email, &m.Status, &m.Subject, &m.Preheader, &m.HTML, &m.Text,
			&m.Provenance, &m.Reason, &m.CreatedAt)
		return m, err
	})
}

// WaitCampaign polls until the campaign leaves the scheduled/running states or ctx ends.
func WaitCampaign(ctx context.Context, pool *pgxpool.Pool, id int64) (*Campaign, error) {
	delay := 20 * time.Millisecond
	for {
		c, err := GetCampaign(ctx, pool, id)
		if err != nil {
			return nil, err
		}
		if c.Status != StatusScheduled && c.Status != StatusRunning {
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
