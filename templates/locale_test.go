package templates

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRender_MoneyFollowsTheRecipientsLocale: RenderData.Locale, then the profile's locale, then
// the manifest's, then en, on the fast path and in liquid alike.
func TestRender_MoneyFollowsTheRecipientsLocale(t *testing.T) {
	t.Parallel()
	files := func(manifestLocale string) map[string]string {
		m := "name: loc\nversion: 1\n"
		if manifestLocale != "" {
			m += "locale: " + manifestLocale + "\n"
		}
		return map[string]string{
			FileManifest: m,
			FileSubject:  `{{ 1999 | money: "EUR" }}`,
			FileHTML:     `<p>{{ customer.price | money: customer.currency }} {% assign p = 1999 | money: "KWD" %}{{ p }}</p>`,
			FileText:     `{{ 123456 | money: "JPY" }}|{{ 1999 | money: "EUR", "nl" }}`,
		}
	}
	tests := []struct {
		name           string
		manifestLocale string
		d              RenderData
		subject, html  string
		text           string
	}{
		{"default en", "", RenderData{}, "€19.99", "<p>€49.00 KWD\u00a01.999</p>", "¥123,456|€\u00a019,99"},
		{"recipient de", "", RenderData{Locale: "de-DE"}, "19,99\u00a0€", "<p>49,00\u00a0€ 1,999\u00a0KWD</p>", "123.456\u00a0¥|€\u00a019,99"},
		{"profile fr", "", RenderData{Customer: map[string]any{"locale": "fr"}}, "19,99\u00a0€", "<p>49,00\u00a0€ 1,999\u00a0KWD</p>", "123\u202f456\u00a0JPY|€\u00a019,99"},
		{"RenderData over the profile", "", RenderData{Locale: "de", Customer: map[string]any{"locale": "fr"}}, "19,99\u00a0€", "<p>49,00\u00a0€ 1,999\u00a0KWD</p>", "123.456\u00a0¥|€\u00a019,99"},
		{"manifest it", "it", RenderData{}, "19,99\u00a0€", "<p>49,00\u00a0€ 1,999\u00a0KWD</p>", "123.456\u00a0JPY|€\u00a019,99"},
		{"recipient over the manifest", "it", RenderData{Locale: "en"}, "€19.99", "<p>€49.00 KWD\u00a01.999</p>", "¥123,456|€\u00a019,99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl := mustFromFiles(t, files(tt.manifestLocale))
			for _, tp := range []*Template{tpl, withoutFastPath(tpl)} {
				d := tt.d
				if d.Customer == nil {
					d.Customer = map[string]any{}
				}
				d.Customer["price"], d.Customer["currency"] = 4900.0, "EUR"
				m, err := NewRenderer(RendererConfig{}).Render(t.Context(), tp, d)
				require.NoError(t, err)
				require.Equal(t, tt.subject, m.Subject, "the subject keeps its no-break space")
				require.Equal(t, tt.html, m.HTML)
				require.Equal(t, tt.text, m.Text)
			}
		})
	}
}

func TestManifest_LocaleIsValidated(t *testing.T) {
	t.Parallel()
	_, err := FromFiles(map[string]string{
		FileManifest: "name: loc\nversion: 1\nlocale: not a locale\n", FileSubject: "s", FileHTML: "h", FileText: "t",
	})
	var se *SyntaxError
	require.ErrorAs(t, err, &se)
	require.Equal(t, FileManifest, se.File)
	require.Equal(t, 3, se.Line)
	require.Contains(t, se.Msg, `locale "not a locale"`)
}

func TestRender_CustomerIDAssignsTheVariant(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: ab\nversion: 1\nvariants:\n  - {name: a, weight: 1, subject: a}\n  - {name: b, weight: 1, subject: b}\n",
		FileSubject:  "base", FileHTML: "h", FileText: "t",
	})
	r := NewRenderer(RendererConfig{})
	campaign := map[string]any{"id": "cmp-7"}
	for i := range 40 {
		id := "c-" + strings.Repeat("x", i)
		byField, err := r.Render(t.Context(), tpl, RenderData{Customer: map[string]any{"customer_id": id}, Campaign: campaign})
		require.NoError(t, err)
		byID, err := r.Render(t.Context(), tpl, RenderData{CustomerID: id, Customer: map[string]any{"customer_id": "someone else"}, Campaign: campaign})
		require.NoError(t, err)
		require.Equal(t, byField.Provenance.Variant, byID.Provenance.Variant, "CustomerID wins over customer_id and assigns the same way")
	}
}

func TestMessage_JSONIsSnakeCase(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Message{Subject: "s", Provenance: Provenance{Template: "t", Version: 2, Variant: "a",
		Sources: map[string]SourceOutcome{"recs": {Outcome: OutcomeFallback, Hash: "h", Reason: "HTTP 500"}}}})
	require.NoError(t, err)
	require.JSONEq(t, `{"subject":"s","preheader":"","html":"","text":"","headers":null,
		"provenance":{"template":"t","version":2,"variant":"a","sources":{"recs":{"outcome":"fallback","hash":"h","reason":"HTTP 500"}}}}`, string(b))
	// Provenance stored before the tags (Go field names) still reads.
	var p Provenance
	require.NoError(t, json.Unmarshal([]byte(`{"Template":"t","Version":2,"Sources":{"recs":{"Outcome":"fetched"}}}`), &p))
	require.Equal(t, "t", p.Template)
	require.Equal(t, OutcomeFetched, p.Sources["recs"].Outcome)
}
