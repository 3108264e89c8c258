package templates

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFastFallbacks_CountedByReason renders parts the fast path does not cover (tablerow), leaves
// to liquid (map iteration) or fails in (division by zero): each falls back with its reason.
func TestFastFallbacks_CountedByReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reason, html string
	}{
		{FallbackUnsupported, "{% tablerow i in (1..2) %}{{ i }}{% endtablerow %}"},
		{FallbackSlowPath, "{% for kv in customer.address %}{{ kv }}{% endfor %}"},
		{FallbackError, "{{ 1 | divided_by: 0 }}"},
	}
	for _, tt := range tests {
		tpl := mustFromFiles(t, map[string]string{FileManifest: "name: m\nversion: 1\n", FileSubject: "s", FileHTML: tt.html, FileText: "t"})
		before := ReadCounters().FastFallbacks[tt.reason]
		_, _ = NewRenderer(RendererConfig{}).Render(t.Context(), tpl, RenderData{Customer: map[string]any{"address": map[string]any{"city": "Paris"}}})
		require.Greater(t, ReadCounters().FastFallbacks[tt.reason], before, tt.reason)
	}
}

func TestReadCounters_HasEveryReasonAndBudget(t *testing.T) {
	t.Parallel()
	c := ReadCounters()
	require.Len(t, c.FastFallbacks, len(fallbackReasons))
	require.Len(t, c.BudgetBreaches, len(budgetNames))
	before := c.BudgetBreaches[BudgetIterations]
	tpl := mustFromFiles(t, map[string]string{FileManifest: "name: m\nversion: 1\n", FileSubject: "s", FileHTML: "{% for i in (1..20) %}{% endfor %}", FileText: "t"})
	_, err := NewRenderer(RendererConfig{Budgets: Budgets{Iterations: 10}}).Render(t.Context(), tpl, RenderData{})
	require.ErrorIs(t, err, ErrBudgetExceeded)
	require.Greater(t, ReadCounters().BudgetBreaches[BudgetIterations], before)
}
