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
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	delivery.BatchSender
}

// Recorder turns verified hits into email_open / email_click events in the delivery outbox.
type Recorder struct {
	db DB
}

// NewRecorder returns a recorder writing through db.
func NewRecorder(db DB) *Recorder { return &Recorder{db: db} }

// Record puts the event of one hit on c's message in the outbox: its message id is the
// rendered_messages row's (as in the delivery outcomes' events) and its event id is random, so
// every hit is its own event (hits are not deduplicated). An unknown message is
// ErrUnknownMessage.
func (r *Recorder) Record(ctx context.Context, c Claims, at time.Time) error {
	var id int64
	err := r.db.QueryRow(ctx, queries.Get("message-id"), c.CampaignID, c.CustomerID, c.Occurrence).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrUnknownMessage
	}
	if err != nil {
		return fmt.Errorf("tracking: find message: %w", err)
	}
	ev, err := Event(c, id, at)
	if err != nil {
		return err
	}
	if err := delivery.EnqueueEvents(ctx, r.db, []events.Event{ev}); err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	return nil
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
