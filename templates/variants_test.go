package templates

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func variantFiles(weights ...int) map[string]string {
	man := "name: ab\nversion: 2\nvariants:\n"
	for i, w := range weights {
		man += fmt.Sprintf("  - {name: v%d, weight: %d}\n", i, w)
	}
	return map[string]string{
		FileManifest: man,
		FileSubject:  "{{ variant }}",
		FileHTML:     "h",
		FileText:     "t",
	}
}

func TestVariants_SplitMatchesWeights(t *testing.T) {
	t.Parallel()
	for _, weights := range [][]int{{50, 50}, {90, 10}, {20, 30, 50}} {
		tpl := mustFromFiles(t, variantFiles(weights...))
		total := 0
		for _, w := range weights {
			total += w
		}
		const n = 10_000
		counts := map[string]int{}
		for i := range n {
			v := tpl.pick(RenderData{
				Campaign: map[string]any{"id": "cmp-7"},
				Customer: map[string]any{"customer_id": fmt.Sprintf("cust-%d", i)},
			})
			counts[v.name]++
		}
		for i, w := range weights {
			share := float64(counts[fmt.Sprintf("v%d", i)]) / n
			require.InDelta(t, float64(w)/float64(total), share, 0.02, "weights %v: counts %v", weights, counts)
		}
	}
}

func TestVariants_AssignmentIsStablePerCampaignAndCustomer(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, variantFiles(50, 50))
	r := NewRenderer(RendererConfig{})
	d := RenderData{Campaign: map[string]any{"id": "cmp-1"}, Customer: map[string]any{"customer_id": "c-1"}}
	first, err := r.Render(context.Background(), tpl, d)
	require.NoError(t, err)
	require.Equal(t, first.Provenance.Variant, first.Subject, "the variant binding names the variant")
	for range 20 {
		m, err := r.Render(context.Background(), tpl, d)
		require.NoError(t, err)
		require.Equal(t, first.Provenance.Variant, m.Provenance.Variant)
	}
	// Another campaign splits independently: over many customers, assignments differ somewhere.
	differs := 0
	for i := range 200 {
		c := map[string]any{"customer_id": fmt.Sprint(i)}
		a := tpl.pick(RenderData{Campaign: map[string]any{"id": "cmp-1"}, Customer: c})
		b := tpl.pick(RenderData{Campaign: map[string]any{"id": "cmp-2"}, Customer: c})
		if a.name != b.name {
			differs++
		}
	}
	require.InDelta(t, 100, differs, 40)
}

func TestVariants_OverridePartsInlineOrFromFile(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: `name: ab
version: 1
variants:
  - name: a
    weight: 1
    subject: "Hello {{ customer.first_name }}"
  - name: b
    weight: 0
    html: html_b
`,
		FileSubject: "Base {{ customer.first_name }}",
		FileHTML:    "<p>base {{ customer.first_name }}</p>",
		"html_b":    "<p>b {{ customer.first_name }}</p>",
		FileText:    "text",
	})
	require.Equal(t, []string{"a", "b"}, tpl.Variants())
	d := RenderData{Customer: map[string]any{"first_name": "<Ada>"}}
	a := tpl.variants[0]
	b := tpl.variants[1]
	out, err := renderPart(a.parts.subject, map[string]any{"customer": d.Customer})
	require.NoError(t, err)
	require.Equal(t, "Hello <Ada>", out)
	out, err = renderPart(a.parts.html, map[string]any{"customer": d.Customer})
	require.NoError(t, err)
	require.Equal(t, "<p>base &lt;Ada&gt;</p>", out)
	out, err = renderPart(b.parts.html, map[string]any{"customer": d.Customer})
	require.NoError(t, err)
	require.Equal(t, "<p>b &lt;Ada&gt;</p>", out, "a variant's html file is auto-escaped too")

	// With weights 1 and 0 everyone gets a.
	m, rerr := NewRenderer(RendererConfig{}).Render(context.Background(), tpl, d)
	require.NoError(t, rerr)
	require.Equal(t, "a", m.Provenance.Variant)
	require.Equal(t, "Hello <Ada>", m.Subject)
}

func TestVariants_RejectsBadDeclarations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		manifest string
		line     int
		msg      string
	}{
		{"name: ab\nversion: 1\nvariants:\n  - {name: a, weight: 0}\n", 3, "add up to 0"},
		{"name: ab\nversion: 1\nvariants:\n  - {name: a, weight: 1}\n  - {name: a, weight: 1}\n", 5, "declared twice"},
		{"name: ab\nversion: 1\nvariants:\n  - {name: a, weight: -1}\n  - {name: b, weight: 3}\n", 4, "negative"},
		{"name: ab\nversion: 1\nvariants:\n  - {weight: 1}\n", 4, "needs a name"},
		{"name: ab\nversion: 1\nvariants:\n  - name: a\n    weight: 1\n    subjcet: x\n", 6, `unknown field "subjcet" (did you mean "subject"?)`},
		{"name: ab\nversion: 1\nvariants:\n  - name: a\n    weight: 1\n    subject: \"{% if %}\"\n", 4, "template.yaml (variant a subject)"},
	}
	for _, tt := range tests {
		files := variantFiles()
		files[FileManifest] = tt.manifest
		_, err := FromFiles(files)
		require.Error(t, err, tt.manifest)
		require.Contains(t, err.Error(), tt.msg)
		var se *SyntaxError
		require.ErrorAs(t, err, &se)
		require.Equal(t, tt.line, se.Line, err.Error())
	}
}

func TestVariants_RenderDataForcesAVariant(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, variantFiles(100, 0))
	r := NewRenderer(RendererConfig{})
	d := RenderData{Campaign: map[string]any{"id": "cmp-1"}, Customer: map[string]any{"customer_id": "c-1"}, Variant: "v1"}
	m, err := r.Render(context.Background(), tpl, d)
	require.NoError(t, err)
	require.Equal(t, "v1", m.Provenance.Variant, "a weight of 0 does not stop a preview")

	d.Variant = "nope"
	_, err = r.Render(context.Background(), tpl, d)
	require.ErrorContains(t, err, `has no variant "nope" (it has v0, v1)`)
}
