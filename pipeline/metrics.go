package pipeline

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailor-email/tailor/internal/metrics"
)

// The event path's metrics. They are created unregistered; RegisterMetrics adds them to a
// registry (tailor serve / tailor consume expose it on /metrics).
var (
	producerRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_events_put_retries_total", Help: "PutRecords retries: kind=call (throttled call) or record (partial failure).",
	}, []string{"kind"})
	eventsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_events_rejected_total", Help: "Events refused and dead-lettered, by source.",
	}, []string{"source"})
	eventsAccepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_events_accepted_total", Help: "Events accepted into the stream, by source.",
	}, []string{"source"})
	eventsApplied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_events_applied_total", Help: "Stream records applied to profiles (duplicates included).",
	})
	millisBehindLatest = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_consumer_millis_behind_latest", Help: "Kinesis MillisBehindLatest of the last GetRecords, per shard this process holds.",
	}, []string{"shard"})
	leasesHeld = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tailor_consumer_leases_held", Help: "Shard leases this process holds.",
	})
	profileWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_profile_event_writes_total", Help: "Coalesced profile writes by outcome: ok, conflict (version moved, retried), unchanged (all duplicates).",
	}, []string{"outcome"})
	eventLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tailor_event_to_profile_seconds", Help: "From arrival in Kinesis to the profile write being durable.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	})
)

// MetricsCollectors are the pipeline's event-path metrics.
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{producerRetries, eventsRejected, eventsAccepted, eventsApplied, millisBehindLatest, leasesHeld, profileWrites, eventLatency}
}

// RegisterMetrics registers the event-path metrics with reg. Registering twice is not an error.
func RegisterMetrics(reg prometheus.Registerer) error {
	if err := metrics.Register(reg, MetricsCollectors()...); err != nil {
		return fmt.Errorf("register pipeline metrics: %w", err)
	}
	return nil
}
