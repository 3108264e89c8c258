package contentdemo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func get(t *testing.T, h http.Handler, target string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	var body map[string]any
	if rec.Code == http.StatusOK {
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	}
	return rec, body
}

func TestHandler_RecommendationsAreDeterministicPerCustomer(t *testing.T) {
	t.Parallel()
	h, err := NewHandler(Config{})
	require.NoError(t, err)
	_, a1 := get(t, h, "/recommendations?customer=c1")
	_, a2 := get(t, h, "/recommendations?customer=c1")
	require.Equal(t, a1, a2)
	items := a1["items"].([]any)
	require.Len(t, items, RecommendationsDefault)
	first := items[0].(map[string]any)
	for _, k := range []string{"name", "url", "price_minor", "currency", "category"} {
		require.Contains(t, first, k)
	}
	// Different customers get different orderings (with 12 items, these two differ).
	differs := false
	for _, id := range []string{"c2", "c3", "c4", "c5"} {
		_, b := get(t, h, "/recommendations?customer="+id)
		if !equalJSON(a1, b) {
			differs = true
		}
	}
	require.True(t, differs, "recommendations do not depend on the customer")
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestHandler_RecommendationsFilterByCategory(t *testing.T) {
	t.Parallel()
	h, err := NewHandler(Config{Items: 10})
	require.NoError(t, err)
	_, body := get(t, h, "/recommendations?customer=c1&categories=shoes,Home")
	items := body["items"].([]any)
	require.Len(t, items, 5) // 2 shoes + 3 home in the built-in catalog
	for _, it := range items {
		require.Contains(t, []string{"shoes", "home"}, it.(map[string]any)["category"])
	}
}

func TestHandler_OfferChangesOnlyByDay(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	h, err := NewHandler(Config{Now: func() time.Time { return now }})
	require.NoError(t, err)
	_, morning := get(t, h, "/offer")
	now = now.Add(10 * time.Hour)
	_, evening := get(t, h, "/offer")
	require.Equal(t, morning, evening)
	require.NotEmpty(t, morning["code"])
	require.Contains(t, morning, "headline")
	require.Contains(t, morning, "percent_off")
	seen := map[any]bool{}
	for d := range 20 {
		now = time.Date(2025, 3, 2+d, 8, 0, 0, 0, time.UTC)
		_, o := get(t, h, "/offer")
		seen[o["code"]] = true
	}
	require.Greater(t, len(seen), 1, "the offer never changes")
}

func TestHandler_ErrorRateAnswers500(t *testing.T) {
	t.Parallel()
	always, err := NewHandler(Config{ErrorRate: 1})
	require.NoError(t, err)
	rec, _ := get(t, always, "/offer")
	require.Equal(t, http.StatusInternalServerError, rec.Code)

	half, err := NewHandler(Config{ErrorRate: 0.5})
	require.NoError(t, err)
	failures := 0
	for range 1000 {
		if rec, _ := get(t, half, "/offer"); rec.Code == http.StatusInternalServerError {
			failures++
		}
	}
	require.InDelta(t, 500, failures, 100)

	_, err = NewHandler(Config{ErrorRate: 1.5})
	require.Error(t, err)
}

func TestHandler_LatencyDelaysAndRespectsCancellation(t *testing.T) {
	t.Parallel()
	h, err := NewHandler(Config{Latency: 50 * time.Millisecond, Jitter: 10 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	rec, _ := get(t, h, "/offer")
	require.Equal(t, http.StatusOK, rec.Code)
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	slow, err := NewHandler(Config{Latency: time.Hour})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rec = httptest.NewRecorder()
	slow.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/offer", nil).WithContext(ctx))
	require.Empty(t, rec.Body.String(), "a cancelled request gets no answer")
}

func TestHandler_UnknownPathAndMethod(t *testing.T) {
	t.Parallel()
	h, err := NewHandler(Config{})
	require.NoError(t, err)
	rec, _ := get(t, h, "/nope")
	require.Equal(t, http.StatusNotFound, rec.Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/offer", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

func TestLoadCatalog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(path, []byte(`[{"name":"Only thing","url":"https://x/1","price_minor":100,"currency":"USD","category":"misc"}]`), 0o600))
	items, err := LoadCatalog(path)
	require.NoError(t, err)
	h, err := NewHandler(Config{Catalog: items})
	require.NoError(t, err)
	_, body := get(t, h, "/recommendations?customer=c1")
	require.Equal(t, "Only thing", body["items"].([]any)[0].(map[string]any)["name"])

	require.NoError(t, os.WriteFile(path, []byte(`[]`), 0o600))
	_, err = LoadCatalog(path)
	require.ErrorContains(t, err, "no items")
}
