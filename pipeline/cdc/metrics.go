package cdc

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The streaming process's own metrics (the slot's lag comes from Collector). They are created
// unregistered; internal/app registers them.
var (
	rowsApplied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_cdc_rows_applied_total", Help: "Row changes applied to profiles (replays and merged changes included).",
	})
	confirmedLSN = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tailor_cdc_confirmed_lsn", Help: "The last LSN this process acknowledged (its effects are durable).",
	})
	commitToProfile = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tailor_cdc_commit_to_profile_seconds", Help: "From a transaction's commit in Postgres to its profile writes being durable.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
)

// MetricsCollectors are the streaming process's metrics.
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{rowsApplied, confirmedLSN, commitToProfile}
}
