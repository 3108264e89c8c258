package templates

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailor-email/tailor/internal/metrics"
)

// The rendering metrics. They are created unregistered; RegisterMetrics adds them to a registry.
var (
	fastFallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_render_fast_fallbacks_total",
		Help: "Parts rendered by liquid instead of the fast path, by reason: unsupported (the part uses what the fast path does not compile), slow_path (a value the fast path leaves to liquid), error (a run-time error, rendered by liquid for its message), panic.",
	}, []string{"reason"})
	budgetBreaches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_render_budget_exceeded_total",
		Help: "Renders stopped by a render budget, by budget (html, text, subject, preheader, iterations, string, items, time).",
	}, []string{"budget"})

	// fallbackCounters are fastFallbacks' children, resolved once: a fallback is counted on the
	// render path.
	fallbackCounters = map[string]prometheus.Counter{
		fallbackUnsupported: fastFallbacks.WithLabelValues(fallbackUnsupported),
		fallbackSlowPath:    fastFallbacks.WithLabelValues(fallbackSlowPath),
		fallbackError:       fastFallbacks.WithLabelValues(fallbackError),
		fallbackPanic:       fastFallbacks.WithLabelValues(fallbackPanic),
	}
)

func countFallback(reason string) { fallbackCounters[reason].Inc() }

// MetricsCollectors are the rendering metrics: tailor_render_fast_fallbacks_total{reason} and
// tailor_render_budget_exceeded_total{budget}.
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{fastFallbacks, budgetBreaches}
}

// RegisterMetrics registers the rendering metrics with reg. Registering twice is not an error.
func RegisterMetrics(reg prometheus.Registerer) error {
	if err := metrics.Register(reg, MetricsCollectors()...); err != nil {
		return fmt.Errorf("register template metrics: %w", err)
	}
	return nil
}
