package cdc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoSlot is returned by ReadStatus when the slot does not exist (CDC never ran, or it was dropped).
var ErrNoSlot = errors.New("cdc: replication slot does not exist (run tailor cdc to create it)")

// Querier is what ReadStatus needs: a pgx pool, connection or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Status describes a slot as Postgres sees it.
type Status struct {
	Slot   string `db:"slot_name"`
	Active bool   `db:"active"` // a process streams from the slot
	PID    int    `db:"pid"`    // the walsender's pid when active
	// ConfirmedFlushLSN is the position the CDC process acknowledged: everything before it is
	// durable in DynamoDB. CurrentLSN is the server's WAL insert position.
	ConfirmedFlushLSN string `db:"confirmed_flush_lsn"`
	CurrentLSN        string `db:"current_lsn"`
	// LagBytes is the WAL written since the confirmed position.
	LagBytes int64 `db:"lag_bytes"`
	// LagSeconds is the walsender's flush_lag: how long WAL took to be confirmed lately (0 idle).
	LagSeconds float64 `db:"lag_seconds"`
	// RetainedBytes is the WAL the server keeps for the slot (from its restart_lsn).
	RetainedBytes int64 `db:"retained_bytes"`
	// WALStatus is pg_replication_slots.wal_status (reserved, extended, unreserved, lost).
	WALStatus string `db:"wal_status"`
	// BackfilledLSN and BackfilledAt say when the slot's snapshot backfill finished (zero if not).
	BackfilledLSN string    `db:"backfilled_lsn"`
	BackfilledAt  time.Time `db:"backfilled_at"`
}

// ReadStatus returns the slot's status, or ErrNoSlot.
func ReadStatus(ctx context.Context, db Querier, slot string) (Status, error) {
	rows, err := db.Query(ctx, q("status"), slot)
	if err != nil {
		return Status{Slot: slot}, fmt.Errorf("cdc: status of slot %s: %w", slot, err)
	}
	st, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Status])
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{Slot: slot}, ErrNoSlot
	}
	if err != nil {
		return Status{Slot: slot}, fmt.Errorf("cdc: status of slot %s: %w", slot, err)
	}
	if st.BackfilledAt.Unix() == 0 {
		st.BackfilledAt = time.Time{} // not backfilled yet
	}
	return st, nil
}

// Collector exports a slot's status as Prometheus gauges, read from Postgres at each scrape.
type Collector struct {
	db   Querier
	slot string

	exists, active, lagBytes, lagSeconds, retained *prometheus.Desc
	mu                                             sync.Mutex
}

// NewCollector returns a collector for slot. Register it with a prometheus.Registerer.
func NewCollector(db Querier, slot string) *Collector {
	l := prometheus.Labels{"slot": slot}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, l) }
	return &Collector{
		db: db, slot: slot,
		exists:     d("tailor_cdc_slot_exists", "1 when the replication slot exists."),
		active:     d("tailor_cdc_slot_active", "1 when a CDC process streams from the slot."),
		lagBytes:   d("tailor_cdc_slot_lag_bytes", "WAL bytes written since the slot's confirmed_flush_lsn."),
		lagSeconds: d("tailor_cdc_slot_lag_seconds", "The walsender's flush_lag in seconds (0 when idle, and when no CDC process streams: see tailor_cdc_slot_active)."),
		retained:   d("tailor_cdc_slot_retained_wal_bytes", "WAL bytes the server retains for the slot."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.exists, c.active, c.lagBytes, c.lagSeconds, c.retained} {
		ch <- d
	}
}

// MetricType returns "gauge": every metric of the collector is one (internal/metrics.Reference).
func (c *Collector) MetricType(string) string { return "gauge" }

// Collect implements prometheus.Collector. A failed query exports an invalid metric (the scrape
// shows the error) rather than stale values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ReadStatus(ctx, c.db, c.slot)
	if errors.Is(err, ErrNoSlot) {
		ch <- prometheus.MustNewConstMetric(c.exists, prometheus.GaugeValue, 0)
		return
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.exists, err)
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(c.exists, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, b(st.Active))
	ch <- prometheus.MustNewConstMetric(c.lagBytes, prometheus.GaugeValue, float64(st.LagBytes))
	ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, st.LagSeconds)
	ch <- prometheus.MustNewConstMetric(c.retained, prometheus.GaugeValue, float64(st.RetainedBytes))
}
