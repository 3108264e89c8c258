package stream

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The stream's metrics. They are created unregistered; internal/app registers them
// (tailor serve / tailor consume expose it on /metrics).
var (
	producerRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_events_put_retries_total", Help: "PutRecords retries: kind=call (throttled call) or record (partial failure).",
	}, []string{"kind"})
	producerAggregation = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_events_put_kinesis_records_total",
		Help: "Kinesis records an aggregating producer planned: kind=aggregated (KPL records of several events), single (one event), " +
			"unavailable (Sends that put one by one, the shard map could not be read).",
	}, []string{"kind"})
	recordsProcessed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_consumer_records_total", Help: "Stream records processed and checkpointed, aggregated ones unpacked (redeliveries included).",
	})
	iteratorAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_consumer_iterator_age_seconds", Help: "How far this process's reads are behind the stream's tip (Kinesis MillisBehindLatest of the last GetRecords, in seconds), per shard it holds (shard ids are unique per stream only).",
	}, []string{"stream", "shard"})
	leasesHeld = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tailor_consumer_leases_held", Help: "Shard leases this process holds.",
	})
	retentionGaps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_consumer_retention_gaps_total",
		Help: "Times a shard's reading jumped over data Kinesis no longer holds (past the stream's retention period): " +
			"reason=checkpoint_refused or checkpoint_trimmed restarted the shard at TRIM_HORIZON, shard_gone marked a deleted shard finished. " +
			"Records in the gap, if any, are lost.",
	}, []string{"reason"})
	recordLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tailor_consumer_event_to_profile_seconds", Help: "From a record's arrival in Kinesis to its effect (the profile write) being durable.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	})
)

// Reasons of tailor_consumer_retention_gaps_total.
const (
	gapCheckpointRefused = "checkpoint_refused" // GetShardIterator refused the checkpoint
	gapCheckpointTrimmed = "checkpoint_trimmed" // the checkpoint's iterator read empty batches a retention period behind
	gapShardGone         = "shard_gone"         // ResourceNotFoundException, and the shard is no longer listed
)

// MetricsCollectors are the stream's metrics.
func MetricsCollectors() []prometheus.Collector {
	// Every reason exists from the start at 0, so an alert on its increase sees the first gap.
	for _, r := range []string{gapCheckpointRefused, gapCheckpointTrimmed, gapShardGone} {
		retentionGaps.WithLabelValues(r)
	}
	return []prometheus.Collector{producerRetries, producerAggregation, recordsProcessed, iteratorAge, leasesHeld, retentionGaps, recordLatency}
}
