package tracking_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/tracking"
)

type fakeRecorder struct {
	mu   sync.Mutex
	got  []tracking.Claims
	fail error
}

func (f *fakeRecorder) Record(_ context.Context, c tracking.Claims, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, c)
	return f.fail
}

func newMux(t testing.TB, tok *tracking.Tokens, rec tracking.Recording) *http.ServeMux {
	t.Helper()
	h, err := tracking.NewHandler(tracking.HandlerConfig{Tokens: tok, Recorder: rec})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Register(mux)
	return mux
}

func get(mux http.Handler, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

func tamper(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func requirePixel(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "image/gif", w.Header().Get("Content-Type"))
	require.Contains(t, w.Header().Get("Cache-Control"), "no-store")
	require.Equal(t, "no-cache", w.Header().Get("Pragma"))
	require.True(t, strings.HasPrefix(w.Body.String(), "GIF89a"))
	require.Len(t, w.Body.Bytes(), 43)
}

func TestHandler_OpenAlwaysAnswersThePixel(t *testing.T) {
	t.Parallel()
	now := fixedNow
	tok := newTokens(t, func() time.Time { return now }, key(t, "k1", 1))
	rec := &fakeRecorder{}
	mux := newMux(t, tok, rec)
	open, err := tok.Mint(tracking.Claims{Kind: tracking.KindOpen, CampaignID: 3, CustomerID: "c1"})
	require.NoError(t, err)
	clickTok, err := tok.Mint(click)
	require.NoError(t, err)

	requirePixel(t, get(mux, "/t/o/"+open))
	require.Len(t, rec.got, 1)
	require.Equal(t, "c1", rec.got[0].CustomerID)

	for _, bad := range []string{tamper(open), "x", clickTok, strings.Repeat("A", tracking.MaxTokenLen+10)} {
		requirePixel(t, get(mux, "/t/o/"+bad))
	}
	now = now.Add(tracking.TokenTTLDefault)
	requirePixel(t, get(mux, "/t/o/"+open))
	require.Len(t, rec.got, 1, "a bad, foreign-kind or expired token records nothing")

	rec.fail = errors.New("database down")
	now = fixedNow
	requirePixel(t, get(mux, "/t/o/"+open))
	require.Len(t, rec.got, 2, "a failed recording still answers the pixel")
}

func TestHandler_ClickRedirectsOnlyToTheSignedTarget(t *testing.T) {
	t.Parallel()
	now := fixedNow
	tok := newTokens(t, func() time.Time { return now }, key(t, "k1", 1))
	rec := &fakeRecorder{}
	mux := newMux(t, tok, rec)
	s, err := tok.Mint(click)
	require.NoError(t, err)

	w := get(mux, "/t/c/"+s)
	require.Equal(t, http.StatusFound, w.Code)
	require.Equal(t, click.URL, w.Header().Get("Location"))
	require.Contains(t, w.Header().Get("Cache-Control"), "no-store")
	require.Len(t, rec.got, 1)
	require.Equal(t, click.URL, rec.got[0].URL)

	open, err := tok.Mint(tracking.Claims{Kind: tracking.KindOpen, CampaignID: 3, CustomerID: "c1"})
	require.NoError(t, err)
	foreign, err := newTokens(t, nil, key(t, "k1", 2)).Mint(click)
	require.NoError(t, err)
	for name, bad := range map[string]string{
		"tampered": tamper(s), "garbage": "not-a-token", "an open token": open, "another key": foreign,
		"too long": strings.Repeat("A", tracking.MaxTokenLen+1),
	} {
		w := get(mux, "/t/c/"+bad)
		require.Equal(t, http.StatusBadRequest, w.Code, name)
		require.Empty(t, w.Header().Get("Location"), name)
	}
	require.Len(t, rec.got, 1, "refused tokens record nothing")

	now = now.Add(tracking.TokenTTLDefault + time.Second)
	w = get(mux, "/t/c/"+s)
	require.Equal(t, http.StatusFound, w.Code, "an expired link still takes the recipient to its target")
	require.Equal(t, click.URL, w.Header().Get("Location"))
	require.Len(t, rec.got, 1, "but records nothing")

	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/t/c/"+s, nil))
	require.Equal(t, http.StatusFound, w.Code)
	now = fixedNow
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/t/c/"+s, nil))
	require.Equal(t, http.StatusFound, w.Code)
	require.Len(t, rec.got, 1, "a HEAD (a link checker) is answered, not recorded")

	require.Equal(t, http.StatusMethodNotAllowed, func() int {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/t/c/"+s, nil))
		return w.Code
	}())
}

// setupDB returns a migrated database with one campaign and its rendered message for c1.
func setupDB(t testing.TB) (*pgxpool.Pool, int64, int64) {
	t.Helper()
	env := testenv.New(t)
	ctx := context.Background()
	var campaign, message int64
	require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment, track)
		VALUES ('t', 't', 1, '{}', 'true', '{opens,clicks}') RETURNING id`).Scan(&campaign))
	require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email, html, occurrence)
		VALUES ($1, 'c1', 'c1@example.com', '<p>x</p>', 'w1') RETURNING id`, campaign).Scan(&message))
	return env.Pool, campaign, message
}

func outbox(t testing.TB, pool *pgxpool.Pool) []events.Event {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT partition_key, payload FROM delivery_outbox ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var key string
		var payload []byte
		require.NoError(t, rows.Scan(&key, &payload))
		ev, err := events.Decode(payload, events.DecodeOptions{})
		require.NoError(t, err, "the outbox holds valid events")
		require.Equal(t, ev.CustomerID, key)
		out = append(out, ev)
	}
	require.NoError(t, rows.Err())
	return out
}

// Against real Postgres: valid hits land in delivery_outbox as email_open / email_click with the
// rendered message's id; refused ones and unknown messages add nothing.
func TestHandler_RecordsHitsInTheOutbox(t *testing.T) {
	t.Parallel()
	pool, campaign, message := setupDB(t)
	tok := newTokens(t, nil, key(t, "k1", 1))
	mux := newMux(t, tok, tracking.NewRecorder(pool))
	mint := func(c tracking.Claims) string {
		s, err := tok.Mint(c)
		require.NoError(t, err)
		return s
	}
	c := tracking.Claims{CampaignID: campaign, CustomerID: "c1", Occurrence: "w1"}
	open := c
	open.Kind = tracking.KindOpen
	clk := c
	clk.Kind, clk.URL = tracking.KindClick, "https://shop.example.com/p?x=1"

	requirePixel(t, get(mux, "/t/o/"+mint(open)))
	w := get(mux, "/t/c/"+mint(clk))
	require.Equal(t, http.StatusFound, w.Code)
	require.Equal(t, clk.URL, w.Header().Get("Location"))
	w = get(mux, "/t/c/"+tamper(mint(clk)))
	require.Equal(t, http.StatusBadRequest, w.Code)
	other := clk
	other.Occurrence = "w2" // no such message
	require.Equal(t, http.StatusFound, get(mux, "/t/c/"+mint(other)).Code)

	evs := outbox(t, pool)
	require.Len(t, evs, 2)
	require.Equal(t, events.TypeEmailOpen, evs[0].Type)
	require.Equal(t, events.TypeEmailClick, evs[1].Type)
	for _, ev := range evs {
		require.Equal(t, "c1", ev.CustomerID)
		require.Equal(t, strconv.FormatInt(campaign, 10), ev.Properties.CampaignID)
		require.Equal(t, strconv.FormatInt(message, 10), ev.Properties.MessageID)
	}
	require.Equal(t, clk.URL, evs[1].Properties.URL)
	require.NotEqual(t, evs[0].EventID, evs[1].EventID)

	// Every hit is its own event (no dedupe): a second click adds a row with a new id.
	get(mux, "/t/c/"+mint(clk))
	evs2 := outbox(t, pool)
	require.Len(t, evs2, 3)
	require.NotEqual(t, evs2[1].EventID, evs2[2].EventID)

	// And is counted on its message: two clicks of one message, one open; the unknown
	// message's hit and the tampered one count nothing.
	e, err := tracking.CampaignEngagement(context.Background(), pool, campaign)
	require.NoError(t, err)
	require.Equal(t, tracking.Engagement{Opens: 1, UniqueOpens: 1, Clicks: 2, UniqueClicks: 1}, e)
	var firstClick, last time.Time
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT first_click_at, last_at FROM message_engagement WHERE message_id = $1`, message).Scan(&firstClick, &last))
	require.True(t, !firstClick.After(last))
	none, err := tracking.CampaignEngagement(context.Background(), pool, campaign+1)
	require.NoError(t, err)
	require.Zero(t, none)
}

// BenchmarkHandler_Click is one click end to end against real Postgres: token check, the
// message lookup and the outbox insert (delivery.EnqueueEvents), and the 302.
func BenchmarkHandler_Click(b *testing.B) {
	pool, campaign, _ := setupDB(b)
	tok := newTokens(b, nil, key(b, "k1", 1))
	mux := newMux(b, tok, tracking.NewRecorder(pool))
	s, err := tok.Mint(tracking.Claims{Kind: tracking.KindClick, CampaignID: campaign, CustomerID: "c1", Occurrence: "w1", URL: "https://shop.example.com/p/1"})
	require.NoError(b, err)
	req := httptest.NewRequest(http.MethodGet, "/t/c/"+s, nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusFound {
			b.Fatal(w.Code)
		}
	}
	b.StopTimer()
	var n int
	require.NoError(b, pool.QueryRow(context.Background(), "SELECT count(*) FROM delivery_outbox").Scan(&n))
	require.Equal(b, b.N, n)
}

// BenchmarkHandler_OpenInvalid is the cost of a refused token: no database work.
func BenchmarkHandler_OpenInvalid(b *testing.B) {
	tok := newTokens(b, nil, key(b, "k1", 1))
	mux := newMux(b, tok, &fakeRecorder{})
	req := httptest.NewRequest(http.MethodGet, "/t/o/AQJrMWPAifDfBgkCYzEAEGh0dHBzOi8veC50ZXN0LzEauS13zdM2cphA", nil)
	for b.Loop() {
		mux.ServeHTTP(httptest.NewRecorder(), req)
	}
}
