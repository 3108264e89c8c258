package profile

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The profile writers' metrics.
var (
	profileWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_profile_event_writes_total", Help: "Coalesced profile writes by outcome: ok, conflict (version moved, retried), unchanged (all duplicates).",
	}, []string{"outcome"})
)

// MetricsCollectors are the profile package's metrics.
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{profileWrites}
}
