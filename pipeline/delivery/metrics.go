package delivery

import "github.com/prometheus/client_golang/prometheus"

// The delivery metrics: claims, acks and their refusals, the claim-time re-check, the outbox,
// tracking and the relay's outcomes.
var (
	claimsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_delivery_claims_total", Help: "Claims of rendered messages (empty ones included).",
	})
	messagesClaimed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_delivery_messages_claimed_total", Help: "Messages handed out by claims (each hand-out of a message counts).",
	})
	claimSuppressed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_delivery_claim_suppressed_total", Help: "Claimed messages left out by the claim-time re-check, by reason.",
	}, []string{"reason"})
	acksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_delivery_acks_total", Help: "Outcomes recorded, by status (sent, bounced, complained, failed, retry, exported).",
	}, []string{"status"})
	acksRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_delivery_acks_refused_total", Help: "Outcomes not recorded, by result (duplicate, stale, conflict, not_found).",
	}, []string{"result"})
	outboxPublished = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_delivery_outbox_published_total", Help: "Outbox events published to the stream.",
	})
	outboxFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_delivery_outbox_failures_total", Help: "Outbox events the stream did not take (tried again later).",
	})
	trackingHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_delivery_tracking_total", Help: "Tracking requests, by kind (open, click) and result (recorded, refused, failed).",
	}, []string{"kind", "result"})
	relayOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_relay_outcomes_total", Help: "Messages a relay delivered, by outcome (sent, bounced, failed, retry).",
	}, []string{"status"})
	relayClaimed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_relay_claimed_total", Help: "Messages a relay claimed from its source.",
	})
	relayAckFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_relay_ack_failures_total", Help: "Ack batches a relay gave up on (their messages come back after the lease).",
	})
)

// MetricsCollectors are the delivery metrics.
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{claimsTotal, messagesClaimed, claimSuppressed, acksTotal, acksRefused, outboxPublished,
		outboxFailed, trackingHits, relayOutcomes, relayClaimed, relayAckFailures}
}
