package templates

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// benchTemplate is a realistic ~15 KB html email: a header, an offer banner, a grid of product
// cards from one source and a footer, with two content sources.
func benchTemplate(tb testing.TB, baseURL string) *Template {
	tb.Helper()
	card := `<tr><td class="card" style="padding:12px 24px;border-bottom:1px solid #e4e4e7;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr>
<td width="96" style="padding-right:16px;"><img src="https://cdn.example/img/{{ item.name | url_encode }}.jpg" width="96" height="96" alt="{{ item.name }}" style="display:block;border-radius:6px;"></td>
<td style="font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#18181b;">
<a href="{{ item.url }}?utm_source=email&amp;utm_campaign={{ campaign.id | url_encode }}" style="color:#2563eb;text-decoration:none;font-weight:bold;">{{ item.name }}</a><br>
<span style="color:#52525b;font-size:13px;">{{ item.category | capitalize }} · picked for {{ customer.first_name }}</span><br>
<span style="font-size:16px;color:#18181b;">{{ item.price_minor | money: item.currency }}</span>
</td></tr></table>
</td></tr>
`
	var html strings.Builder
	html.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{ customer.first_name }}, picked for you</title>
<style>` + strings.Repeat(".card a:hover{text-decoration:underline}\n", 160) + `</style></head>
<body style="margin:0;background:#f4f4f5;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="background:#fff;">
<tr><td style="padding:32px 24px;"><h1 style="margin:0;font-size:24px;">Hi {{ customer.first_name | capitalize }},</h1>
<p>Your {{ customer.tier | default: "member" }} picks for {{ now | date: "%B %-d", "Europe/Paris" }}.</p></td></tr>
{% if content.offer.code %}<tr><td style="padding:12px 24px;background:#fef3c7;"><strong>{{ content.offer.headline }}</strong> Code <strong>{{ content.offer.code }}</strong>: {{ content.offer.percent_off }}% off.</td></tr>{% endif %}
`)
	for range 3 {
		html.WriteString("{% for item in content.recs.items %}\n" + card + "{% endfor %}\n")
	}
	html.WriteString(strings.Repeat(`<tr><td style="padding:8px 24px;font-size:12px;color:#71717a;font-family:Helvetica,Arial,sans-serif;">Prices include VAT. Offers valid while stock lasts. Example Shop, 1 Rue de l'Exemple, 75001 Paris.</td></tr>
`, 20))
	html.WriteString(`<tr><td style="padding:16px 24px;font-size:12px;"><a href="{{ preferences_url }}">Preferences</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr>
</table></td></tr></table></body></html>`)

	tpl, err := FromFiles(map[string]string{
		FileManifest: `name: bench
version: 1
defaults: {first_name: there}
content:
  recs:
    url: "` + baseURL + `/recs?customer={{ customer.customer_id | url_encode }}"
    cache_ttl: 1h
  offer:
    url: "` + baseURL + `/offer"
    cache_ttl: 1h
`,
		FileSubject: `{{ customer.first_name | capitalize }}, picked for you`,
		FileHTML:    html.String(),
		FileText:    `Hi {{ customer.first_name }},{% for item in content.recs.items %}\n- {{ item.name }} {{ item.price_minor | money: item.currency }} {{ item.url }}{% endfor %}`,
	})
	require.NoError(tb, err)
	require.InDelta(tb, 15<<10, len(html.String()), 2<<10)
	return tpl
}

// BenchmarkRender measures in-process rendering of the ~15 KB benchTemplate with both content
// sources served from the renderer's cache: per render, the variant pick, the source URLs, cache
// lookups and provenance (outcome and hash per source), and all parts (subject, html with every
// output escaped, text). Run it on one core, as make bench does:
//
//	go test -run '^$' -bench BenchmarkRender -benchmem -cpu 1 ./templates/
//
// renders/s is the throughput of one core. BenchmarkRenderLiquid is the same with the fast path
// off (every part rendered by liquid), for comparison.
func BenchmarkRender(b *testing.B) { benchmarkRender(b, false) }

// BenchmarkRenderLiquid is BenchmarkRender with every part rendered by liquid.
func BenchmarkRenderLiquid(b *testing.B) { benchmarkRender(b, true) }

// withoutFastPath returns a copy of t whose parts all render with liquid.
func withoutFastPath(t *Template) *Template {
	c := *t
	strip := func(p *part) *part {
		if p == nil {
			return nil
		}
		q := *p
		q.prog = nil
		return &q
	}
	noFast := func(ps parts) parts {
		return parts{strip(ps.subject), strip(ps.preheader), strip(ps.html), strip(ps.text)}
	}
	c.base = noFast(t.base)
	c.variants = nil
	for _, v := range t.variants {
		v.parts = noFast(v.parts)
		c.variants = append(c.variants, v)
	}
	return &c
}

func benchmarkRender(b *testing.B, liquidOnly bool) {
	srv := newContentServer(b, map[string]http.HandlerFunc{
		"/recs":  jsonHandler(recsBody),
		"/offer": jsonHandler(`{"code":"HELLO20","headline":"A little welcome gift.","percent_off":20}`),
	})
	tpl := benchTemplate(b, srv.URL)
	r := NewRenderer(RendererConfig{})
	d := customer("c-1", "ada")
	d.Customer["tier"] = "gold"
	// Warm the cache: the benchmark measures rendering with both sources served from cache.
	m := renderAsLiquid(b, r, tpl, d)
	require.Greater(b, len(m.HTML), 12<<10)
	require.Contains(b, m.HTML, "Linen shirt")
	if liquidOnly {
		tpl = withoutFastPath(tpl)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := r.Render(context.Background(), tpl, d)
		if err != nil || m.Provenance.Sources["recs"].Outcome != OutcomeCached {
			b.Fatalf("render: %v %+v", err, m)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renders/s")
}

// BenchmarkRenderNewsletter renders the end-to-end campaign benchmark's newsletter
// (cmd/tailor/testdata/newsletter: five product blocks from the recipient's picks, forloop
// counters, money) in-process, with the message checked against liquid's first: the
// template engine's share of BenchmarkCampaignE2E_100k without the stack.
func BenchmarkRenderNewsletter(b *testing.B) {
	tpl, err := Load("../cmd/tailor/testdata/newsletter")
	require.NoError(b, err)
	picks := make([]any, 5)
	for i := range picks {
		picks[i] = map[string]any{"sku": "SKU-1" + strings.Repeat("0", i), "name": "Relaxed Linen Shirt", "category": "clothing",
			"price": float64(1990 + 100*i), "was": float64(2990 * (i % 2)), "image": "relaxed-linen-shirt",
			"blurb": "Cut for an easy fit and made to last. Machine washable at 30°C."}
	}
	d := customer("b000042", "Chloé")
	d.Customer["email"], d.Customer["locale"], d.Customer["country"] = "b42@example.com", "en", "FR"
	d.Customer["attributes"] = map[string]any{"picks": picks}
	r := NewRenderer(RendererConfig{})
	m := renderAsLiquid(b, r, tpl, d)
	require.Greater(b, len(m.HTML), 10<<10)
	require.Contains(b, m.HTML, "utm_content=pick5")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(context.Background(), tpl, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renders/s")
}

// renderAsLiquid renders d with tpl and checks that the fast path's message is liquid's, byte
// for byte.
func renderAsLiquid(b *testing.B, r *Renderer, tpl *Template, d RenderData) *Message {
	m, err := r.Render(context.Background(), tpl, d)
	require.NoError(b, err)
	ms, err := r.Render(context.Background(), withoutFastPath(tpl), d)
	require.NoError(b, err)
	require.Equal(b, ms.Subject, m.Subject)
	require.Equal(b, ms.HTML, m.HTML)
	require.Equal(b, ms.Text, m.Text)
	return m
}
