package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates"
)

// BenchmarkNewsletterRender is the per-recipient work of the 100 000-recipient campaign
// benchmarks in process, with no emulator or Postgres to bound it: a decoded profile's read
// view (Fields) and the render of the ~11 KB newsletter of testdata/newsletter, as a render job
// does them. Its figures say what tailor work's own code costs per message.
func BenchmarkNewsletterRender(b *testing.B) {
	tpl, err := templates.Load("testdata/newsletter")
	require.NoError(b, err)
	r := templates.NewRenderer(templates.RendererConfig{})
	ps := make([]*profile.Profile, 1000)
	for i := range ps {
		ps[i] = newsletterProfile(i)
	}
	campaign := map[string]any{"id": int64(1), "name": "bench"}
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	ctx := context.Background()
	var size int
	i := 0
	for b.Loop() {
		msg, err := r.Render(ctx, tpl, jobs.RenderData(ps[i%len(ps)], campaign, now))
		if err != nil {
			b.Fatal(err)
		}
		size += len(msg.HTML)
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "renders/s")
	b.ReportMetric(float64(size)/float64(i), "html_bytes")
}
