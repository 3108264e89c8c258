package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/events"
)

// testClock is the store's clock in tests: it moves only when told.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type storeEnv struct {
	*testenv.Env
	store *delivery.Store
	clock *testClock
}

func newStoreEnv(t testing.TB) *storeEnv {
	t.Helper()
	env := testenv.New(t)
	clock := newTestClock()
	store, err := delivery.NewStore(delivery.StoreConfig{DB: env.Pool, Now: clock.Now, Logger: discardLogger()})
	require.NoError(t, err)
	return &storeEnv{Env: env, store: store, clock: clock}
}

// campaign inserts a campaign in status with topic ("" for none).
func (e *storeEnv) campaign(t testing.TB, status, topic string) int64 {
	t.Helper()
	var id int64
	var top *string
	if topic != "" {
		top = &topic
		_, err := e.Pool.Exec(t.Context(), `INSERT INTO topics (name, default_status) VALUES ($1, 'subscribed') ON CONFLICT DO NOTHING`, topic)
		require.NoError(t, err)
	}
	require.NoError(t, e.Pool.QueryRow(t.Context(), `INSERT INTO campaigns (name, template_name, template_version, template_files, segment, status, topic, started_at)
		VALUES ('c', 't', 1, '{}', 'true', $1, $2, now()) RETURNING id`, status, top).Scan(&id))
	return id
}

// render records n rendered messages of a campaign for customers prefix1..prefixN
// (prefixI@example.com), claimable from notBefore.
func (e *storeEnv) render(t testing.TB, campaign int64, prefix string, n int, notBefore time.Time) []int64 {
	t.Helper()
	rows, err := e.Pool.Query(t.Context(), `INSERT INTO rendered_messages (campaign_id, customer_id, email, subject, html, text_body, headers, not_before)
		SELECT $1, $2 || g, $2 || g || '@example.com', 'Hi ' || g, '<p>Hi ' || g || '</p>', 'Hi ' || g,
		       '{"List-Unsubscribe": "<https://t.example/u/x>"}', $4
		FROM generate_series(1, $3) g ORDER BY g RETURNING id`, campaign, prefix, n, notBefore)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return ids
}

func (e *storeEnv) claim(t *testing.T, limit int, lease time.Duration, campaign int64) []delivery.Message {
	t.Helper()
	msgs, err := e.store.Claim(t.Context(), delivery.ClaimRequest{Limit: limit, Lease: lease, CampaignID: campaign})
	require.NoError(t, err)
	return msgs
}

func sentOutcomes(msgs []delivery.Message) []delivery.Outcome {
	out := make([]delivery.Outcome, len(msgs))
	for i, m := range msgs {
		out[i] = delivery.Outcome{MessageID: m.ID, CampaignID: m.CampaignID, Receipt: m.Receipt, Status: delivery.StatusSent,
			ProviderID: fmt.Sprint("p", m.ID), Reply: "250 2.0.0 OK"}
	}
	return out
}

func (e *storeEnv) ack(t *testing.T, outcomes ...delivery.Outcome) []delivery.AckOutcome {
	t.Helper()
	res, err := e.store.Ack(t.Context(), outcomes)
	require.NoError(t, err)
	require.Len(t, res, len(outcomes))
	return res
}

func (e *storeEnv) state(t *testing.T, id int64) *delivery.MessageState {
	t.Helper()
	st, err := e.store.Get(t.Context(), id)
	require.NoError(t, err)
	return st
}

// outboxEvents decodes the events waiting in the outbox, oldest first.
func (e *storeEnv) outboxEvents(t *testing.T) []events.Event {
	t.Helper()
	rows, err := e.Pool.Query(t.Context(), `SELECT partition_key, payload FROM delivery_outbox ORDER BY id`)
	require.NoError(t, err)
	var out []events.Event
	var key string
	var payload []byte
	_, err = pgx.ForEachRow(rows, []any{&key, &payload}, func() error {
		ev, err := events.Decode(payload, events.DecodeOptions{Now: e.clock.Now()})
		require.NoError(t, err, "every outbox event is valid on the stream: %s", payload)
		require.Equal(t, ev.CustomerID, key, "partitioned by customer")
		out = append(out, ev)
		return nil
	})
	require.NoError(t, err)
	return out
}

func TestStore_FourSendersClaimTwentyThousandWithNoOverlapAndNoGap(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	const n = 20_000
	camp := e.campaign(t, jobs.StatusRendered, "")
	ids := e.render(t, camp, "c", n, e.clock.Now().Add(-time.Minute))

	var mu sync.Mutex
	got := map[int64]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				msgs, err := e.store.Claim(context.Background(), delivery.ClaimRequest{Limit: 100, Lease: time.Minute})
				if !assertNoError(t, err) || len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					got[m.ID]++
				}
				mu.Unlock()
				res, err := e.store.Ack(context.Background(), sentOutcomes(msgs))
				if !assertNoError(t, err) {
					return
				}
				for _, r := range res {
					if r.Result != delivery.AckAccepted {
						t.Errorf("message %d: %s (%s)", r.MessageID, r.Result, r.Reason)
					}
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, got, n, "no gap: every message handed out")
	for _, id := range ids {
		require.Equal(t, 1, got[id], "no overlap: message %d handed out once", id)
	}
	c, err := e.store.Counts(t.Context(), camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Sent: n}, c)
	var outbox int
	require.NoError(t, e.Pool.QueryRow(t.Context(), `SELECT count(*) FROM delivery_outbox`).Scan(&outbox))
	require.Equal(t, n, outbox, "one email_sent event per message, in the outbox")
}

// assertNoError reports err from a goroutine that may not call t.FailNow.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func TestStore_ADeadSendersMessagesAreReissuedAfterTheLease(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	camp := e.campaign(t, jobs.StatusRunning, "")
	e.render(t, camp, "d", 5, e.clock.Now().Add(-time.Minute))

	dead := e.claim(t, 10, time.Minute, camp)
	require.Len(t, dead, 5)
	for _, m := range dead {
		require.Zero(t, m.Attempt)
		require.NotEmpty(t, m.Receipt)
		require.Equal(t, e.clock.Now().Add(time.Minute).Truncate(time.Microsecond), m.LeaseExpires.Truncate(time.Microsecond))
		require.Equal(t, delivery.StateLeased, e.state(t, m.ID).State)
	}
	require.Empty(t, e.claim(t, 10, time.Minute, camp), "leased: nobody else gets them")

	e.clock.Advance(time.Minute + time.Second) // the sender died: it never acks
	again := e.claim(t, 10, time.Minute, camp)
	require.Len(t, again, 5, "re-issued after the lease")
	byID := map[int64]delivery.Message{}
	for _, m := range again {
		byID[m.ID] = m
		require.Equal(t, 1, m.Attempt, "the second hand-out")
	}
	for _, m := range dead {
		require.NotEqual(t, m.Receipt, byID[m.ID].Receipt, "a fresh receipt per claim")
	}

	// The dead sender comes back and acks with its old receipts: refused, message by message.
	res := e.ack(t, sentOutcomes(dead[:2])...)
	for _, r := range res {
		require.Equal(t, delivery.AckStale, r.Result, r.Reason)
		require.Contains(t, r.Reason, "claimed again")
	}
	// The new holder's ack counts; repeated, it is a no-op; another outcome is a conflict.
	first := sentOutcomes(again[:1])[0]
	require.Equal(t, delivery.AckAccepted, e.ack(t, first)[0].Result)
	require.Equal(t, delivery.AckDuplicate, e.ack(t, first)[0].Result)
	other := first
	other.Status, other.Reason = delivery.StatusFailed, "changed my mind"
	require.Equal(t, delivery.AckConflict, e.ack(t, other)[0].Result)
	st := e.state(t, first.MessageID)
	require.Equal(t, delivery.StateSent, st.State)
	require.Equal(t, 2, st.Attempts)
	require.Equal(t, first.ProviderID, st.ProviderID)
	require.Len(t, e.outboxEvents(t), 1, "the duplicate added no event")

	// A lease that expired but went to nobody else may still be acked by its holder.
	e.clock.Advance(2 * time.Minute)
	require.Equal(t, delivery.AckAccepted, e.ack(t, sentOutcomes(again[1:2])...)[0].Result)
	unknown := delivery.Outcome{MessageID: 1 << 40, Receipt: "x", Status: delivery.StatusSent}
	require.Equal(t, delivery.AckNotFound, e.ack(t, unknown)[0].Result)
}

func TestStore_RetryComesBackAfterItsDelayAndFinalOutcomesBecomeEvents(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	camp := e.campaign(t, jobs.StatusRendered, "")
	ids := e.render(t, camp, "r", 5, e.clock.Now().Add(-time.Minute))
	msgs := e.claim(t, 5, time.Minute, camp)
	require.Len(t, msgs, 5)
	byID := map[int64]delivery.Message{}
	for _, m := range msgs {
		byID[m.ID] = m
	}
	out := func(i int, o delivery.Outcome) delivery.Outcome {
		o.MessageID, o.Receipt, o.CampaignID = ids[i], byID[ids[i]].Receipt, camp
		return o
	}
	res := e.ack(t,
		out(0, delivery.Outcome{Status: delivery.StatusRetry, RetryAfter: 10 * time.Minute, Reply: "451 4.7.1 try later"}),
		out(1, delivery.Outcome{Status: delivery.StatusBounced, Bounce: delivery.BounceHard, Reply: "550 5.1.1 user unknown"}),
		out(2, delivery.Outcome{Status: delivery.StatusBounced, Bounce: delivery.BounceSoft, Reply: "452 mailbox full"}),
		out(3, delivery.Outcome{Status: delivery.StatusComplained}),
		out(4, delivery.Outcome{Status: delivery.StatusFailed, Reason: "message cannot be built"}),
	)
	for _, r := range res {
		require.Equal(t, delivery.AckAccepted, r.Result)
	}
	st := e.state(t, ids[0])
	require.Equal(t, delivery.StateRetrying, st.State)
	require.Equal(t, "retry", st.Outcome)
	require.Nil(t, st.ClaimedAt, "a retried message counts as unclaimed: a cancel cancels it")
	require.Empty(t, e.claim(t, 5, time.Minute, camp), "not before its retry time")
	e.clock.Advance(10*time.Minute + time.Second)
	retried := e.claim(t, 5, time.Minute, camp)
	require.Len(t, retried, 1)
	require.Equal(t, ids[0], retried[0].ID)
	require.Equal(t, 1, retried[0].Attempt)

	var got []string
	for _, ev := range e.outboxEvents(t) {
		require.Equal(t, fmt.Sprint(camp), ev.Properties.CampaignID)
		p := ev.Properties
		got = append(got, strings.Join([]string{ev.Type, p.MessageID, p.Bounce, p.Reason}, "|"))
	}
	require.ElementsMatch(t, []string{
		events.TypeEmailDeferred + "|" + fmt.Sprint(ids[0]) + "||451 4.7.1 try later",
		events.TypeEmailBounced + "|" + fmt.Sprint(ids[1]) + "|hard|550 5.1.1 user unknown",
		events.TypeEmailBounced + "|" + fmt.Sprint(ids[2]) + "|soft|452 mailbox full",
		events.TypeEmailComplained + "|" + fmt.Sprint(ids[3]) + "||",
		events.TypeEmailFailed + "|" + fmt.Sprint(ids[4]) + "||message cannot be built",
	}, got, "every outcome is an event with its detail, a retry too")

	rows, err := e.Pool.Query(t.Context(), `SELECT email, reason, source FROM suppressions ORDER BY email`)
	require.NoError(t, err)
	supp, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (out [3]string, err error) {
		return out, r.Scan(&out[0], &out[1], &out[2])
	})
	require.NoError(t, err)
	require.Equal(t, [][3]string{{"r2@example.com", "hard_bounce", "sender"}, {"r4@example.com", "complaint", "sender"}}, supp,
		"hard bounces and complaints are suppressed; a soft bounce is not")

	c, err := e.store.Counts(t.Context(), camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Leased: 1, BouncedHard: 1, BouncedSoft: 1, Complained: 1, Failed: 1}, c)
}

func TestStore_RecipientWhoUnsubscribedAfterRenderIsSuppressedAtClaim(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	ctx := t.Context()
	camp := e.campaign(t, jobs.StatusRendered, "news")
	_, err := e.Pool.Exec(ctx, `INSERT INTO customers (id, email) SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 4) g;
		INSERT INTO consents (customer_id, purpose, granted) SELECT 'u' || g, 'email_marketing', true FROM generate_series(1, 4) g`)
	require.NoError(t, err)
	ids := e.render(t, camp, "u", 4, e.clock.Now().Add(-time.Minute))

	// Between render and claim: u1 unsubscribes from the topic, u2 withdraws consent, u3's
	// address is suppressed.
	_, err = e.Pool.Exec(ctx, `INSERT INTO subscriptions (customer_id, topic, status) VALUES ('u1', 'news', 'unsubscribed');
		UPDATE consents SET granted = false WHERE customer_id = 'u2';
		INSERT INTO suppressions (email, reason, source) VALUES ('u3@example.com', 'unsubscribed', 'one_click')`)
	require.NoError(t, err)

	msgs := e.claim(t, 10, time.Minute, 0)
	require.Len(t, msgs, 1)
	require.Equal(t, ids[3], msgs[0].ID, "only u4 is handed out")
	for i, reason := range []string{"unsubscribed", "no_consent", "suppressed"} {
		st := e.state(t, ids[i])
		require.Equal(t, delivery.StateSuppressed, st.State)
		require.Equal(t, reason, st.Reason)
	}
	require.Empty(t, e.claim(t, 10, time.Minute, 0), "never handed out later either")
	c, err := e.store.Counts(ctx, camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Leased: 1, Suppressed: 3}, c)
	var got []string
	for _, ev := range e.outboxEvents(t) {
		require.Equal(t, fmt.Sprint(camp), ev.Properties.CampaignID)
		got = append(got, strings.Join([]string{ev.Type, ev.CustomerID, ev.Properties.MessageID, ev.Properties.Reason}, "|"))
	}
	require.ElementsMatch(t, []string{
		events.TypeEmailSuppressed + "|u1|" + fmt.Sprint(ids[0]) + "|unsubscribed",
		events.TypeEmailSuppressed + "|u2|" + fmt.Sprint(ids[1]) + "|no_consent",
		events.TypeEmailSuppressed + "|u3|" + fmt.Sprint(ids[2]) + "|suppressed",
	}, got, "each message held back at claim is an event with the reason")
}

func TestStore_PausedAndCancelledCampaignsAreNotClaimable(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	ctx := t.Context()
	past := e.clock.Now().Add(-time.Minute)
	paused := e.campaign(t, jobs.StatusRunning, "")
	e.render(t, paused, "p", 3, past)
	cancelled := e.campaign(t, jobs.StatusRunning, "")
	cids := e.render(t, cancelled, "x", 3, past)
	future := e.campaign(t, jobs.StatusRunning, "")
	fids := e.render(t, future, "f", 2, e.clock.Now().Add(time.Hour))
	for _, status := range []string{jobs.StatusDraft, jobs.StatusScheduled, jobs.StatusFailed} {
		e.render(t, e.campaign(t, status, ""), "o"+status, 2, past)
	}

	// Of the campaign to be cancelled, one message is out with a sender, one retried.
	out := e.claim(t, 2, time.Minute, cancelled)
	require.Len(t, out, 2)
	require.Equal(t, delivery.AckAccepted, e.ack(t, delivery.Outcome{MessageID: out[1].ID, Receipt: out[1].Receipt, Status: delivery.StatusRetry})[0].Result)

	_, err := jobs.Pause(ctx, e.Pool, paused)
	require.NoError(t, err)
	_, err = jobs.Cancel(ctx, e.Pool, cancelled)
	require.NoError(t, err)
	require.Empty(t, e.claim(t, 100, time.Minute, 0), "nothing claimable: paused, cancelled, not yet due, draft, scheduled, failed")
	require.Equal(t, delivery.StateScheduled, e.state(t, fids[0]).State)
	require.Equal(t, delivery.State(jobs.MessageCancelled), e.state(t, cids[2]).State, "never claimed: cancelled")
	require.Equal(t, delivery.State(jobs.MessageCancelled), e.state(t, out[1].ID).State, "retried, so unclaimed: cancelled")
	require.Equal(t, delivery.StateLeased, e.state(t, out[0].ID).State, "with a sender: it may still ack")
	require.Equal(t, delivery.AckAccepted, e.ack(t, sentOutcomes(out[:1])...)[0].Result)

	e.clock.Advance(2 * time.Hour) // the future campaign's send time passed; paused is still paused
	got := e.claim(t, 100, time.Minute, 0)
	require.Len(t, got, 2)
	for _, m := range got {
		require.Equal(t, future, m.CampaignID)
	}
	_, err = jobs.Resume(ctx, e.Pool, paused)
	require.NoError(t, err)
	require.Len(t, e.claim(t, 100, time.Minute, paused), 3, "resumed: claimable again")
}

// Within a campaign the messages due first go first (local-time campaigns have many send
// times); a claim's limit holds across campaigns.
func TestStore_ClaimsTheEarliestSendTimesFirst(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	now := e.clock.Now()
	c := e.campaign(t, jobs.StatusRunning, "")
	late := e.render(t, c, "late", 3, now.Add(-time.Minute))
	early := e.render(t, c, "early", 3, now.Add(-time.Hour)) // inserted after the later ones
	mid := e.render(t, c, "mid", 3, now.Add(-30*time.Minute))
	ids := func(msgs []delivery.Message) []int64 {
		out := make([]int64, len(msgs))
		for i, m := range msgs {
			out[i] = m.ID
		}
		slices.Sort(out)
		return out
	}
	require.Equal(t, early, ids(e.claim(t, 3, time.Minute, c)))
	require.Equal(t, mid, ids(e.claim(t, 3, time.Minute, 0)))
	other := e.campaign(t, jobs.StatusRunning, "")
	more := e.render(t, other, "o", 4, now.Add(-time.Minute))
	got := e.claim(t, 5, time.Minute, 0)
	require.Len(t, got, 5, "the limit holds across campaigns")
	require.Subset(t, append(append([]int64{}, late...), more...), ids(got))
	require.Len(t, e.claim(t, 100, time.Minute, 0), 2, "and the rest comes next")
}

func TestRetention_DeletesBodiesAWeekAfterTheFinalAckAndKeepsTheHash(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	ctx := t.Context()
	camp := e.campaign(t, jobs.StatusRendered, "")
	ids := e.render(t, camp, "k", 4, e.clock.Now().Add(-time.Minute))
	var hashes [4][]byte
	for i, id := range ids {
		require.NoError(t, e.Pool.QueryRow(ctx, `SELECT body_sha256 FROM rendered_messages WHERE id = $1`, id).Scan(&hashes[i]))
		require.Len(t, hashes[i], 32, "the insert trigger hashed the body")
	}
	msgs := e.claim(t, 3, time.Minute, camp) // ids[3] stays ready
	byID := map[int64]delivery.Message{}
	for _, m := range msgs {
		byID[m.ID] = m
	}
	e.ack(t, sentOutcomes([]delivery.Message{byID[ids[0]]})...)
	e.ack(t, delivery.Outcome{MessageID: ids[1], Receipt: byID[ids[1]].Receipt, Status: delivery.StatusFailed, Reason: "x"})
	e.clock.Advance(6 * 24 * time.Hour)
	e.ack(t, sentOutcomes([]delivery.Message{byID[ids[2]]})...) // a lease that expired unclaimed may still be acked

	cfg := jobs.Config{Pool: e.Pool, Now: e.clock.Now, Logger: discardLogger()}
	n, err := jobs.DeleteExpiredBodies(ctx, cfg, time.Minute)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is a week past its final ack yet")
	e.clock.Advance(24*time.Hour + time.Minute)
	n, err = jobs.DeleteExpiredBodies(ctx, cfg, time.Minute)
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "the two acked a week ago")
	for i, id := range ids {
		var html, text string
		var hash []byte
		var deleted *time.Time
		require.NoError(t, e.Pool.QueryRow(ctx, `SELECT html, text_body, body_sha256, body_deleted_at FROM rendered_messages WHERE id = $1`, id).
			Scan(&html, &text, &hash, &deleted))
		require.Equal(t, hashes[i], hash, "the content hash stays")
		if i < 2 {
			require.Empty(t, html)
			require.Empty(t, text)
			require.NotNil(t, deleted)
			require.Equal(t, fmt.Sprintf("%x", hash), e.state(t, id).BodySHA256)
		} else {
			require.NotEmpty(t, html, "message %d: acked less than a week ago, or never", i)
			require.Nil(t, deleted)
		}
	}
	require.Equal(t, delivery.StateSent, e.state(t, ids[0]).State, "the delivery record stays")
	n, err = jobs.DeleteExpiredBodies(ctx, cfg, time.Minute)
	require.NoError(t, err)
	require.Zero(t, n, "deleted once")
	cfg.BodyRetention = -1
	e.clock.Advance(30 * 24 * time.Hour)
	n, err = jobs.DeleteExpiredBodies(ctx, cfg, time.Minute)
	require.NoError(t, err)
	require.Zero(t, n, "negative retention keeps bodies")
}

func TestStore_CancelTakesMessagesWhoseLeaseExpired(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	ctx := t.Context()
	camp := e.campaign(t, jobs.StatusRunning, "")
	e.render(t, camp, "e", 2, e.clock.Now().Add(-time.Hour))
	// Claimed two minutes ago for one minute (the cancel compares with Postgres's clock):
	// the sender is gone. The other is leased now, for a minute.
	live := e.claim(t, 1, time.Minute, camp)
	e.clock.Advance(-2 * time.Minute)
	gone := e.claim(t, 1, time.Minute, camp)
	e.clock.Advance(2 * time.Minute)
	require.Len(t, gone, 1)
	require.Len(t, live, 1)
	_, err := jobs.Cancel(ctx, e.Pool, camp)
	require.NoError(t, err)
	require.Equal(t, delivery.State(jobs.MessageCancelled), e.state(t, gone[0].ID).State, "its lease expired: cancelled")
	require.Equal(t, delivery.StateLeased, e.state(t, live[0].ID).State, "with a sender: it may still ack")
	c, err := e.store.Counts(ctx, camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Leased: 1}, c, "nothing of a cancelled campaign waits as ready")
}

// A provider's reply becomes an event's reason that the stream's decoder accepts: valid UTF-8,
// within the event contract's limit, cut at a character boundary.
func TestEventReason_IsValidWithinTheLimit(t *testing.T) {
	t.Parallel()
	require.Equal(t, "550 5.1.1 unknown", delivery.EventReason("  550 5.1.1 unknown \r\n"))
	require.Equal(t, "550 caf\uFFFD", delivery.EventReason("550 caf\xe9"), "Latin-1 from an old server")
	long := delivery.EventReason(strings.Repeat("a\xff", delivery.MaxReplyBytes/2)) // 4 bytes a pair once replaced
	require.True(t, utf8.ValidString(long))
	require.LessOrEqual(t, len(long), events.MaxStringLen)
	require.Greater(t, len(long), events.MaxStringLen-3)
	ev := events.Event{EventID: "e", CustomerID: "c", Type: events.TypeEmailDeferred, Timestamp: time.Now().UTC(),
		Properties: events.Properties{CampaignID: "1", Reason: long}}
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	_, err = events.Decode(raw, events.DecodeOptions{})
	require.NoError(t, err, "the stream takes the event")
}
