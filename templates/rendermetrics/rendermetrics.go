// Package rendermetrics exports the counters of package templates to Prometheus:
// tailor_render_fast_fallbacks_total{reason} (parts rendered by liquid instead of the fast path),
// tailor_render_budget_exceeded_total{budget} (renders stopped by a render budget) and
// tailor_content_breaker_state{source} (each content source's circuit breaker in this process).
//
// It is a package of its own so that the renderer does not link the Prometheus client, whose
// init-time heap would be marked by every GC cycle of a small-heap render benchmark. It reads
// templates.ReadCounters when scraped and keeps no state; it must not import anything of
// Tailor's but templates and internal/metrics.
package rendermetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailor-email/tailor/templates"
)

var (
	fallbacksDesc = prometheus.NewDesc("tailor_render_fast_fallbacks_total",
		"Parts rendered by liquid instead of the fast path, by reason: unsupported (the part uses what the fast path does not compile), slow_path (a value the fast path leaves to liquid), error (a run-time error, rendered by liquid for its message), panic.",
		[]string{"reason"}, nil)
	breachesDesc = prometheus.NewDesc("tailor_render_budget_exceeded_total",
		"Renders stopped by a render budget, by budget (html, text, subject, preheader, iterations, string, items, time).",
		[]string{"budget"}, nil)
	breakerDesc = prometheus.NewDesc("tailor_content_breaker_state",
		"Circuit breaker state of each content source this process called, by source (template/source): 0 closed, 1 half-open, 2 open (renders use stale content or the fallback).",
		[]string{"source"}, nil)
)

// collector reads templates' counters at each scrape.
type collector struct{}

var theCollector prometheus.Collector = collector{}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fallbacksDesc
	ch <- breachesDesc
	ch <- breakerDesc
}

func (collector) Collect(ch chan<- prometheus.Metric) {
	c := templates.ReadCounters()
	for reason, n := range c.FastFallbacks {
		ch <- prometheus.MustNewConstMetric(fallbacksDesc, prometheus.CounterValue, float64(n), reason)
	}
	for budget, n := range c.BudgetBreaches {
		ch <- prometheus.MustNewConstMetric(breachesDesc, prometheus.CounterValue, float64(n), string(budget))
	}
	for source, state := range templates.ReadBreakerStates() {
		ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, float64(state), source)
	}
}

// MetricType returns the Prometheus type of each metric this collector exports, for the
// README's metrics table (internal/metrics.Reference).
func (collector) MetricType(name string) string {
	if name == "tailor_content_breaker_state" {
		return "gauge"
	}
	return "counter"
}

// MetricsCollectors are the rendering metrics.
func MetricsCollectors() []prometheus.Collector { return []prometheus.Collector{theCollector} }
