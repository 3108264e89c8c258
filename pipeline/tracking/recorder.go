package tracking

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/internal/sqlfile"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/events"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// ErrUnknownMessage is returned by Record for a genuine token whose message is not in
// rendered_messages (its campaign was deleted): nothing is recorded.
var ErrUnknownMessage = errors.New("tracking: no such message")

// DB is what a Recorder needs of Postgres: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Recorder turns verified hits into email_open / email_click events in the delivery outbox,
// and counts them per message (CampaignEngagement).
type Recorder struct {
	db DB
}

// NewRecorder returns a recorder writing through db.
func NewRecorder(db DB) *Recorder { return &Recorder{db: db} }

// Record counts one hit on c's message and puts its event in the outbox, in one transaction:
// the event's message id is the rendered_messages row's (as in the delivery outcomes' events)
// and its event id is random, so every hit is its own event (the profile counts every open and
// click; CampaignEngagement also says how many messages were opened or clicked at all). An
// unknown message is ErrUnknownMessage.
func (r *Recorder) Record(ctx context.Context, c Claims, at time.Time) error {
	kind := "open"
	if c.Kind == KindClick {
		kind = "click"
	}
	return pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, queries.Get("record-hit"), c.CampaignID, c.CustomerID, c.Occurrence, kind, at.UTC()).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnknownMessage
		}
		if err != nil {
			return fmt.Errorf("tracking: record hit: %w", err)
		}
		ev, err := Event(c, id, at)
		if err != nil {
			return err
		}
		if err := delivery.EnqueueEvents(ctx, tx, []events.Event{ev}); err != nil {
			return fmt.Errorf("tracking: %w", err)
		}
		return nil
	})
}

// Engagement is a campaign's tracked opens and clicks: every hit (Opens, Clicks) and the
// messages with at least one (UniqueOpens, UniqueClicks).
type Engagement struct {
	Opens, UniqueOpens, Clicks, UniqueClicks int
}

// CampaignEngagement reads a campaign's engagement counts (all zero before the first hit).
func CampaignEngagement(ctx context.Context, db DB, campaignID int64) (Engagement, error) {
	var e Engagement
	if err := db.QueryRow(ctx, queries.Get("campaign-engagement"), campaignID).Scan(&e.Opens, &e.UniqueOpens, &e.Clicks, &e.UniqueClicks); err != nil {
		return Engagement{}, fmt.Errorf("tracking: campaign engagement: %w", err)
	}
	return e, nil
}

// Event is the stream event of a hit on message id: email_open or email_click (with the
// target URL), for c's customer and campaign, with a fresh random event id.
func Event(c Claims, messageID int64, at time.Time) (events.Event, error) {
	var rnd [16]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	ev := events.Event{
		CustomerID: c.CustomerID, Timestamp: at.UTC(),
		Properties: events.Properties{CampaignID: strconv.FormatInt(c.CampaignID, 10), MessageID: strconv.FormatInt(messageID, 10)},
	}
	switch c.Kind {
	case KindOpen:
		ev.Type, ev.EventID = events.TypeEmailOpen, "open-"+hex.EncodeToString(rnd[:])
	case KindClick:
		ev.Type, ev.EventID = events.TypeEmailClick, "click-"+hex.EncodeToString(rnd[:])
		ev.Properties.URL = c.URL
	default:
		return events.Event{}, fmt.Errorf("tracking: no event for kind %v", c.Kind)
	}
	return ev, nil
}
