package events

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The event contract's metrics. Refused events are counted once, by the dead-letter store
// (tailor_dead_letters_total{source}), not here.
var (
	eventsAccepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_events_accepted_total", Help: "Events accepted into the stream, by source.",
	}, []string{"source"})
	eventsApplied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_events_applied_total", Help: "Valid events read from the stream and applied to profiles (duplicates included).",
	})
)

// MetricsCollectors are the event contract's metrics.
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{eventsAccepted, eventsApplied}
}
