package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
)

// Actions a marketer takes on a campaign.
const (
	ActionSchedule = "schedule"
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionCancel   = "cancel"
)

// Transitions lists, for each action, the statuses it applies to. The workers make the other
// moves: scheduled -> running (the start job), running|paused -> rendered (the last recipient
// recorded), scheduled|running|paused -> failed (a template fault).
//
//	schedule  draft -> scheduled (batch) | running (triggered: it starts listening)
//	pause     scheduled, running -> paused (render jobs snooze within PauseSnoozeDefault)
//	resume    paused -> running (started before) | scheduled
//	cancel    draft, scheduled, running, paused, rendered -> cancelled (unclaimed messages too)
var Transitions = map[string][]string{
	ActionSchedule: {StatusDraft},
	ActionPause:    {StatusScheduled, StatusRunning},
	ActionResume:   {StatusPaused},
	ActionCancel:   {StatusDraft, StatusScheduled, StatusRunning, StatusPaused, StatusRendered},
}

// ErrIllegalTransition matches every *TransitionError.
var ErrIllegalTransition = errors.New("illegal campaign transition")

// TransitionError is an action the campaign's status does not allow.
type TransitionError struct {
	ID     int64
	Action string
	Status string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("campaign %d is %s: cannot %s it (%s applies to %s campaigns)", e.ID, e.Status, e.Action, e.Action,
		strings.Join(Transitions[e.Action], ", "))
}

// Is makes errors.Is(err, ErrIllegalTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// RenderAheadDefault is how long before its send time a campaign starts rendering (content
// stays fresh, and a message is ready when it becomes claimable).
const RenderAheadDefault = 10 * time.Minute

// Schedule gives a draft its send time and enqueues its start job in the same transaction; a
// triggered draft starts listening (sendAt must be zero for it).
func Schedule(ctx context.Context, pool *pgxpool.Pool, rc *river.Client[pgx.Tx], id int64, sendAt SendAt) (*Campaign, error) {
	var scheduled *Campaign
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		c, err := lockCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		if !slices.Contains(Transitions[ActionSchedule], c.Status) {
			return &TransitionError{ID: id, Action: ActionSchedule, Status: c.Status}
		}
		if c.Kind == KindTriggered {
			if !sendAt.IsZero() {
				return fmt.Errorf("%w: campaign %d is triggered: it sends when its trigger fires, not at --send-at", ErrInvalidCampaign, id)
			}
			if _, err := tx.Exec(ctx, queries.Get("activate-triggered"), id); err != nil {
				return err
			}
		} else {
			if sendAt.IsZero() {
				return fmt.Errorf("%w: schedule campaign %d: --send-at is required", ErrInvalidCampaign, id)
			}
			if err := scheduleTx(ctx, tx, rc, id, sendAt, time.Now()); err != nil {
				return err
			}
		}
		// The campaign as this transaction left it: once it commits, a worker may start it at
		// once (a start due now is available), and the caller reports what it did.
		scheduled, err = GetCampaign(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("schedule campaign %d: %w", id, err)
	}
	return scheduled, nil
}

// scheduleTx stores the send time and enqueues the start job: RenderAheadDefault before an
// absolute send time, now for a recipient-local one (the fan-out computes each recipient's
// time and schedules their render batches).
func scheduleTx(ctx context.Context, tx pgx.Tx, rc *river.Client[pgx.Tx], id int64, sendAt SendAt, now time.Time) error {
	var at *time.Time
	var local *string
	start := now
	if sendAt.Local != "" {
		local = &sendAt.Local
	} else {
		at = &sendAt.At
		if s := sendAt.At.Add(-RenderAheadDefault); s.After(now) {
			start = s
		}
	}
	if _, err := tx.Exec(ctx, queries.Get("schedule-campaign"), id, at, local); err != nil {
		return fmt.Errorf("store send time: %w", err)
	}
	// A start due now goes in available: with a ScheduledAt River inserts it scheduled, and
	// only River's leader moves scheduled jobs, so after the leader died a campaign waited for
	// the next election (12-20 s in make chaos).
	opts := &river.InsertOpts{}
	if start.After(now) {
		opts.ScheduledAt = start
	}
	if _, err := rc.InsertTx(ctx, tx, CampaignStartArgs{CampaignID: id}, opts); err != nil {
		return fmt.Errorf("enqueue campaign.start: %w", err)
	}
	return nil
}

// lockCampaign reads a campaign's kind and status with a row lock for the transaction.
func lockCampaign(ctx context.Context, tx pgx.Tx, id int64) (*Campaign, error) {
	c := &Campaign{ID: id}
	err := tx.QueryRow(ctx, queries.Get("lock-campaign"), id).Scan(&c.Kind, &c.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("lock campaign %d: %w", id, err)
	}
	return c, nil
}

// Pause holds a scheduled or running campaign: render jobs that start after it snooze (within
// PauseSnoozeDefault), jobs already rendering finish their batch. Nothing is failed or lost.
func Pause(ctx context.Context, pool *pgxpool.Pool, id int64) (*Campaign, error) {
	return transition(ctx, pool, id, ActionPause, "pause-campaign")
}

// Resume continues a paused campaign where it stopped.
func Resume(ctx context.Context, pool *pgxpool.Pool, id int64) (*Campaign, error) {
	return transition(ctx, pool, id, ActionResume, "resume-campaign")
}

// Cancel stops a campaign for good: no further rendering, and every message not yet claimed by
// a sender becomes cancelled in the same transaction, so no sender ever gets one.
func Cancel(ctx context.Context, pool *pgxpool.Pool, id int64) (*Campaign, error) {
	return transition(ctx, pool, id, ActionCancel, "cancel-campaign", "cancel-messages")
}

func transition(ctx context.Context, pool *pgxpool.Pool, id int64, action string, stmts ...string) (*Campaign, error) {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		c, err := lockCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		if !slices.Contains(Transitions[action], c.Status) {
			return &TransitionError{ID: id, Action: action, Status: c.Status}
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, queries.Get(s), id); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s campaign %d: %w", action, id, err)
	}
	return GetCampaign(ctx, pool, id)
}
