package opsstatus

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// Breaker states are read from each worker's /metrics, by source and instance.
func TestReadBreakers_FromEachWorkersMetrics(t *testing.T) {
	t.Parallel()
	worker := func(body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
		t.Cleanup(srv.Close)
		return srv.URL + "/metrics"
	}
	a := worker("# TYPE tailor_content_breaker_state gauge\ntailor_content_breaker_state{source=\"welcome/recs\"} 2\ntailor_content_breaker_state{source=\"welcome/hero\"} 0\n# TYPE go_goroutines gauge\ngo_goroutines 7\n")
	b := worker("# TYPE tailor_content_breaker_state gauge\ntailor_content_breaker_state{source=\"welcome/recs\"} 1\n")
	var s BreakersSection
	err := readBreakers(context.Background(), Config{MetricsURLs: []string{a, b}}.withDefaults(), &s)
	require.NoError(t, err)
	require.ElementsMatch(t, []Breaker{
		{Source: "welcome/hero", State: "closed", Instance: a},
		{Source: "welcome/recs", State: "open", Instance: a},
		{Source: "welcome/recs", State: "half-open", Instance: b},
	}, s.Breakers)
	require.Equal(t, "welcome/hero", s.Breakers[0].Source, "sorted by source")

	s = BreakersSection{}
	err = readBreakers(context.Background(), Config{}.withDefaults(), &s)
	require.NoError(t, err, "no URLs is not an outage")
	require.Contains(t, s.From, "--metrics-url")
}
