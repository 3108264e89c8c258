package profile

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailor-email/tailor/internal/metrics"
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

// RegisterMetrics registers the metrics with reg. Registering twice is not an error.
func RegisterMetrics(reg prometheus.Registerer) error {
	if err := metrics.Register(reg, MetricsCollectors()...); err != nil {
		return fmt.Errorf("register profile metrics: %w", err)
	}
	return nil
}
