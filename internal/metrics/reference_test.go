package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

type typedCollector struct{ d *prometheus.Desc }

func (c typedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c typedCollector) Collect(chan<- prometheus.Metric)    {}
func (c typedCollector) MetricType(string) string            { return "gauge" }

func TestReference_ParsesDescs(t *testing.T) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tailor_a_total", Help: `counts "a" | b`}, []string{"z", "kind"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tailor_b", Help: "a gauge"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tailor_c_seconds", Help: "a histogram"})
	tc := typedCollector{prometheus.NewDesc("tailor_d_bytes", "custom", []string{"x"}, prometheus.Labels{"slot": "s"})}
	infos, err := Reference(h, tc, cv, g)
	require.NoError(t, err)
	require.Equal(t, []Info{
		{Name: "tailor_a_total", Type: "counter", Labels: []string{"kind", "z"}, Help: `counts "a" | b`},
		{Name: "tailor_b", Type: "gauge", Help: "a gauge"},
		{Name: "tailor_c_seconds", Type: "histogram", Help: "a histogram"},
		{Name: "tailor_d_bytes", Type: "gauge", Labels: []string{"slot", "x"}, Help: "custom"},
	}, infos)
	require.Contains(t, Table(infos), "| `tailor_a_total` | counter | `kind`, `z` | counts \"a\" \\| b |")
	require.Equal(t, []string{"tailor_c_seconds_bucket", "tailor_c_seconds_sum", "tailor_c_seconds_count"}, infos[2].Series())

	_, err = Reference(cv, cv)
	require.ErrorContains(t, err, "described twice")
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want string // "" for a good name
	}{
		{Info{Name: "tailor_events_accepted_total", Type: "counter", Help: "h", Labels: []string{"source"}}, ""},
		{Info{Name: "tailor_cdc_slot_lag_bytes", Type: "gauge", Help: "h"}, ""},
		{Info{Name: "tailor_render_seconds", Type: "histogram", Help: "h"}, ""},
		{Info{Name: "events_total", Type: "counter", Help: "h"}, "want tailor_"},
		{Info{Name: "tailor_consumer_millis_behind_latest", Type: "gauge", Help: "h"}, `unit "millis"`},
		{Info{Name: "tailor_latency_ms", Type: "gauge", Help: "h"}, `unit "ms"`},
		{Info{Name: "tailor_claims", Type: "counter", Help: "h"}, "ends in _total"},
		{Info{Name: "tailor_leases_total", Type: "gauge", Help: "h"}, "only counters"},
		{Info{Name: "tailor_x_count", Type: "gauge", Help: "h"}, "reserved"},
		{Info{Name: "tailor_x", Type: "gauge"}, "no help"},
		{Info{Name: "tailor_x", Type: "gauge", Help: "h", Labels: []string{"Shard"}}, "label"},
		{Info{Name: "tailor_Bad", Type: "gauge", Help: "h"}, "snake case"},
	} {
		err := CheckName(tc.info)
		if tc.want == "" {
			require.NoError(t, err, tc.info.Name)
		} else {
			require.ErrorContains(t, err, tc.want, tc.info.Name)
		}
	}
}
