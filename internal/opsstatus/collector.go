package opsstatus

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the Postgres side of the report as gauges, read at each scrape: River's
// unfinished jobs and the oldest one's age, the senders' backlog, pending dead letters and the
// progress of campaigns in flight. tailor work registers it (its /metrics, --metrics-addr).
// A failed read exports an invalid metric (the scrape shows the error) rather than stale values.
//
// The sender backlog counts every undelivered message (the claim index's entries), which takes
// a while behind a 10-million-recipient campaign; so the readings are kept for CacheFor and
// scrapes within it (from several Prometheus servers, or a short scrape interval) share them.
type Collector struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	mu      sync.Mutex
	readAt  time.Time
	last    []prometheus.Metric

	jobs, oldestJob, backlog, oldestReady, deadPending, audience, processed *prometheus.Desc
}

// CacheFor is how long a Collector reuses its readings.
const CacheFor = 10 * time.Second

// NewCollector returns a collector over pool. Register it with a prometheus.Registerer.
func NewCollector(pool *pgxpool.Pool) *Collector {
	return &Collector{
		pool: pool, timeout: TimeoutDefault,
		jobs: prometheus.NewDesc("tailor_river_jobs", "River's unfinished jobs, by queue, kind and state (available, scheduled, retryable, running).",
			[]string{"queue", "kind", "state"}, nil),
		oldestJob: prometheus.NewDesc("tailor_river_oldest_due_job_age_seconds", "How long the oldest job that is due (available, or scheduled or retryable with its time come) has waited past its scheduled time, by queue and kind (0 with none).",
			[]string{"queue", "kind"}, nil),
		backlog: prometheus.NewDesc("tailor_delivery_backlog_messages", "Rendered messages no sender has finished, by state: ready (claimable), leased, expired (leases that ran out without an ack; also ready), waiting (send or retry time ahead).",
			[]string{"state"}, nil),
		oldestReady: prometheus.NewDesc("tailor_delivery_oldest_ready_age_seconds", "How long the oldest claimable message has waited for a sender (0 with none).", nil, nil),
		deadPending: prometheus.NewDesc("tailor_dead_letters_pending", "Dead letters not replayed, by source.", []string{"source"}, nil),
		audience:    prometheus.NewDesc("tailor_campaign_audience", "Audience of each campaign in flight (scheduled, running, paused).", []string{"campaign"}, nil),
		processed:   prometheus.NewDesc("tailor_campaign_processed", "Recipients recorded so far by each campaign in flight.", []string{"campaign"}, nil),
	}
}

func (c *Collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{c.jobs, c.oldestJob, c.backlog, c.oldestReady, c.deadPending, c.audience, c.processed}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// MetricType returns "gauge": every metric of the collector is one (internal/metrics.Reference).
func (c *Collector) MetricType(string) string { return "gauge" }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.readAt) > CacheFor {
		c.last, c.readAt = c.read(), time.Now()
	}
	for _, m := range c.last {
		ch <- m
	}
}

func (c *Collector) read() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var out []prometheus.Metric
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	invalid := func(d *prometheus.Desc, err error) { out = append(out, prometheus.NewInvalidMetric(d, err)) }
	var q QueuesSection
	if err := readQueues(ctx, c.pool, &q); err != nil {
		invalid(c.jobs, err)
	} else {
		for _, k := range q.Kinds {
			g(c.jobs, float64(k.Available), k.Queue, k.Kind, "available")
			g(c.jobs, float64(k.Scheduled), k.Queue, k.Kind, "scheduled")
			g(c.jobs, float64(k.Retryable), k.Queue, k.Kind, "retryable")
			g(c.jobs, float64(k.Running), k.Queue, k.Kind, "running")
			g(c.oldestJob, k.OldestDueSeconds, k.Queue, k.Kind)
		}
	}
	var s SendersSection
	if err := readSenders(ctx, c.pool, &s); err != nil {
		invalid(c.backlog, err)
	} else {
		g(c.backlog, float64(s.Ready), "ready")
		g(c.backlog, float64(s.Leased), "leased")
		g(c.backlog, float64(s.Expired), "expired")
		g(c.backlog, float64(s.Waiting), "waiting")
		g(c.oldestReady, s.OldestReadySeconds)
	}
	var d DeadLettersSection
	if err := readDeadLetters(ctx, c.pool, &d); err != nil {
		invalid(c.deadPending, err)
	} else {
		for _, src := range d.Sources {
			g(c.deadPending, float64(src.Pending), src.Source)
		}
	}
	var cs CampaignsSection
	if err := readCampaigns(ctx, Config{Pool: c.pool, CampaignsMax: CampaignsMaxDefault}, &cs); err != nil {
		invalid(c.audience, err)
	} else {
		for _, cp := range cs.Campaigns {
			id := strconv.FormatInt(cp.ID, 10)
			g(c.audience, float64(cp.Audience), id)
			g(c.processed, float64(cp.Processed), id)
		}
	}
	return out
}
