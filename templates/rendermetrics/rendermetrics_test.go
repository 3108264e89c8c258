package rendermetrics

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/metrics"
	"github.com/tailor-email/tailor/templates"
)

// gather returns the value of each series of the registry, by "name{label}".
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			out[f.GetName()+"{"+m.GetLabel()[0].GetValue()+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestMetricsCollectors_ExportTheRenderersCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, metrics.Register(reg, MetricsCollectors()...))
	require.NoError(t, metrics.Register(reg, MetricsCollectors()...), "registering twice is not an error")
	before := gather(t, reg)
	require.Contains(t, before, "tailor_render_fast_fallbacks_total{unsupported}")
	require.Contains(t, before, "tailor_render_budget_exceeded_total{iterations}")

	tpl, err := templates.FromFiles(map[string]string{
		"template.yaml": "name: m\nversion: 1\n", "subject": "s", "text": "t",
		"html": "{% tablerow i in (1..20) %}{{ i }}{% endtablerow %}",
	})
	require.NoError(t, err)
	_, err = templates.NewRenderer(templates.RendererConfig{Budgets: templates.Budgets{Iterations: 10}}).Render(context.Background(), tpl, templates.RenderData{})
	require.ErrorIs(t, err, templates.ErrBudgetExceeded)
	after := gather(t, reg)
	require.Greater(t, after["tailor_render_fast_fallbacks_total{unsupported}"], before["tailor_render_fast_fallbacks_total{unsupported}"])
	require.Greater(t, after["tailor_render_budget_exceeded_total{iterations}"], before["tailor_render_budget_exceeded_total{iterations}"])
}
