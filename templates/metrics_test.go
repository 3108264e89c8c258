package templates

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestRegisterMetrics_TwiceIsNotAnError(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	require.NoError(t, RegisterMetrics(reg))
	require.NoError(t, RegisterMetrics(reg))
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	require.Contains(t, names, "tailor_render_fast_fallbacks_total")
}

// TestFastFallbacks_CountedByReason renders parts the fast path does not cover (tablerow), leaves
// to liquid (map iteration) or fails in (an unknown time zone): each falls back with its reason.
func TestFastFallbacks_CountedByReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reason, html string
	}{
		{fallbackUnsupported, "{% tablerow i in (1..2) %}{{ i }}{% endtablerow %}"},
		{fallbackSlowPath, "{% for kv in customer.address %}{{ kv }}{% endfor %}"},
		{fallbackError, "{{ 1 | divided_by: 0 }}"},
	}
	for _, tt := range tests {
		tpl := mustFromFiles(t, map[string]string{FileManifest: "name: m\nversion: 1\n", FileSubject: "s", FileHTML: tt.html, FileText: "t"})
		before := counterValue(t, fallbackCounters[tt.reason])
		_, _ = NewRenderer(RendererConfig{}).Render(t.Context(), tpl, RenderData{Customer: map[string]any{"address": map[string]any{"city": "Paris"}}})
		require.Greater(t, counterValue(t, fallbackCounters[tt.reason]), before, tt.reason)
	}
}
