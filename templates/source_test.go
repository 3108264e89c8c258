package templates

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRender_CoalescesConcurrentFetchesOfOneURL(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		<-release // hold the first request so the other renders pile up behind it
		jsonHandler(recsBody)(w, r)
	}, RendererConfig{})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", fallbackYAML))

	const n = 50
	var wg sync.WaitGroup
	outcomes := make([]SourceOutcome, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
			errs[i] = err
			if err == nil {
				outcomes[i] = m.Provenance.Sources["recs"]
			}
		})
	}
	// Release once the first request has arrived.
	require.Eventually(t, func() bool { return b.srv.requests.Load() >= 1 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()

	require.EqualValues(t, 1, b.srv.requests.Load())
	for i := range n {
		require.NoError(t, errs[i])
		require.Contains(t, []string{OutcomeFetched, OutcomeCached}, outcomes[i].Outcome)
		require.Equal(t, hashBytes([]byte(recsBody)), outcomes[i].Hash)
	}
}

func TestRender_CachesByRenderedURLUntilTTL(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := setup(t, jsonHandler(recsBody), RendererConfig{Now: clock.Now})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs?c={{ customer.customer_id }}", "    cache_ttl: 30s\n"))
	render := func(id string) string {
		m, err := b.r.Render(context.Background(), tpl, customer(id, "Ada"))
		require.NoError(t, err)
		return m.Provenance.Sources["recs"].Outcome
	}
	require.Equal(t, OutcomeFetched, render("c1"))
	require.Equal(t, OutcomeCached, render("c1"))
	require.Equal(t, OutcomeFetched, render("c2"), "another URL is another cache entry")
	require.EqualValues(t, 2, b.srv.requests.Load())
	clock.Advance(31 * time.Second)
	require.Equal(t, OutcomeFetched, render("c1"))
	require.EqualValues(t, 3, b.srv.requests.Load())
}

func TestRender_ZeroCacheTTLDisablesCache(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonHandler(recsBody), RendererConfig{})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", "    cache_ttl: 0s\n"))
	for range 3 {
		m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
		require.NoError(t, err)
		require.Equal(t, OutcomeFetched, m.Provenance.Sources["recs"].Outcome)
	}
	require.EqualValues(t, 3, b.srv.requests.Load())
}

func TestRender_UsesStaleResponseWithinStaleTTL(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	var failing atomic.Bool
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		jsonHandler(recsBody)(w, r)
	}, RendererConfig{Now: clock.Now, RetryBackoff: time.Millisecond})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", "    cache_ttl: 10s\n    stale_ttl: 5m\n"+fallbackYAML))
	render := func() (*Message, SourceOutcome) {
		m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
		require.NoError(t, err)
		return m, m.Provenance.Sources["recs"]
	}
	_, got := render()
	require.Equal(t, OutcomeFetched, got.Outcome)

	failing.Store(true)
	clock.Advance(time.Minute)
	m, got := render()
	require.Equal(t, SourceOutcome{Outcome: OutcomeStale, Hash: hashBytes([]byte(recsBody)), Reason: "HTTP 500"}, got)
	require.Contains(t, m.Text, "Linen shirt")

	clock.Advance(5 * time.Minute)
	m, got = render()
	require.Equal(t, OutcomeFallback, got.Outcome)
	require.Contains(t, m.Text, "Our bestsellers")
}

func TestRender_OpensCircuitAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}, RendererConfig{BreakerFailures: 3, BreakerOpen: time.Hour})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs?c={{ customer.customer_id }}", "    retries: 0\n"+fallbackYAML))
	for i := range 3 {
		m, err := b.r.Render(context.Background(), tpl, customer("c"+string(rune('a'+i)), "Ada"))
		require.NoError(t, err)
		require.Equal(t, "HTTP 500", m.Provenance.Sources["recs"].Reason)
	}
	m, err := b.r.Render(context.Background(), tpl, customer("c-other", "Ada"))
	require.NoError(t, err)
	require.Equal(t, OutcomeFallback, m.Provenance.Sources["recs"].Outcome)
	require.Equal(t, "circuit open", m.Provenance.Sources["recs"].Reason)
	require.EqualValues(t, 3, b.srv.requests.Load(), "an open breaker sends no request")
}

func TestRender_RetriesStayWithinTimeoutBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}, RendererConfig{RetryBackoff: time.Second})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", "    retries: 5\n    timeout: 300ms\n"+fallbackYAML))
	start := time.Now()
	m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
	require.NoError(t, err)
	require.Less(t, time.Since(start), 300*time.Millisecond, "a backoff longer than the budget is not waited for")
	require.Equal(t, "HTTP 503", m.Provenance.Sources["recs"].Reason)
	require.EqualValues(t, 1, b.srv.requests.Load())
}

func TestCache_StaysBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newCache(3)
	for i := range 10 {
		c.put(string(rune('a'+i)), &entry{keepUntil: now.Add(time.Hour)}, now)
	}
	require.Len(t, c.entries, 3)
	require.NotNil(t, c.get("j"), "the newest entry is kept")

	// A full cache makes room for an eighth of its size at once, not one entry per put.
	big := newCache(800)
	for i := range 800 {
		big.put(strconv.Itoa(i), &entry{keepUntil: now.Add(time.Hour)}, now)
	}
	big.put("new", &entry{keepUntil: now.Add(time.Hour)}, now)
	require.Len(t, big.entries, 701)
	require.NotNil(t, big.get("new"))
}
