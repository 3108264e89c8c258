package jobs

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The campaign workers' metrics. They are created unregistered; internal/app registers them
// (tailor work exposes them with --metrics-addr).
var (
	renderSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tailor_render_seconds", Help: "Time to render one recipient's message (profile data, content sources and Liquid), failures included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	recipientsRecorded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_campaign_recipients_total", Help: "Recipients recorded by campaign render jobs, by status (rendered, excluded, skipped, failed, cancelled), once each when their transaction commits.",
	}, []string{"status"})
	contentOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_content_source_outcomes_total", Help: "Where rendered messages' content came from, by content source (template/source) and outcome (fetched, cached, stale, fallback).",
	}, []string{"source", "outcome"})
)

// MetricsCollectors are the campaign workers' metrics.
func MetricsCollectors() []prometheus.Collector {
	for _, s := range []string{MessageRendered, MessageExcluded, MessageSkipped, MessageFailed, MessageCancelled} {
		recipientsRecorded.WithLabelValues(s) // every status exists from the start at 0
	}
	return []prometheus.Collector{renderSeconds, recipientsRecorded, contentOutcomes}
}

// observeRender records one recipient's render time.
func observeRender(d time.Duration) { renderSeconds.Observe(d.Seconds()) }

// countCommitted adds a committed batch's counters (addCounters' keys) to the metrics.
func countCommitted(template string, counts map[string]int64) {
	for k, n := range counts {
		switch k {
		case MessageRendered, MessageExcluded, MessageSkipped, MessageFailed, MessageCancelled:
			recipientsRecorded.WithLabelValues(k).Add(float64(n))
			continue
		}
		if rest, ok := strings.CutPrefix(k, "source:"); ok {
			if name, outcome, ok := strings.Cut(rest, ":"); ok {
				contentOutcomes.WithLabelValues(template+"/"+name, outcome).Add(float64(n))
			}
		}
	}
}
