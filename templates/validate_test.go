package templates

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFolder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	return dir
}

var sampleProfile = map[string]any{
	"customer_id":     "c-1",
	"first_name":      "Ada",
	"recently_viewed": []any{map[string]any{"product_id": "p-1", "category": "shoes"}},
}

func TestValidate_ExampleIsClean(t *testing.T) {
	t.Parallel()
	rep := Validate("examples/welcome", ValidateConfig{Sample: sampleProfile})
	require.Empty(t, rep.Errors)
	require.Empty(t, rep.Warnings)
}

func TestValidate_ErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		FileManifest: "name: v\nversion: 1\ndefaults:\n  locale: en\ncontent:\n  recs:\n    url: http://x/recs\n",
		FileSubject:  "Hi {{ customer.first_name }}",
		FileHTML:     "<p>{{ customer.locale }}</p>",
		FileText:     "{% for i in content.recs.items %}{{ i.name }}{% endfor %}",
	}
	tests := []struct {
		name, file, content string
		want                []string // "file:line: message fragment"
	}{
		{"syntax", FileHTML, "<p>\n{% if customer.first_name %}\n", []string{"html:2: "}},
		{"unknown customer field", FileHTML, "<p>\n\n{{ customer.frist_name }}</p>", []string{"html:3: unknown variable customer.frist_name (did you mean customer.first_name?)"}},
		{"unknown field in a tag", FileText, "a\n{% if customer.vip_level > 2 %}x{% endif %}", []string{"text:2: unknown variable customer.vip_level"}},
		{"unknown content source", FileText, "{{ content.recs.items.size }}\n{{ content.rec.items }}", []string{"text:2: unknown variable content.rec (did you mean content.recs?)"}},
		{"unknown filter", FileSubject, "{{ customer.first_name | upcse }}", []string{`subject:1: unknown filter "upcse" (did you mean "upcase"?)`}},
		{"string literals are ignored", FileSubject, `{{ "customer.nope | nofilter" | append: customer.first_name }}`, nil},
		{"raw blocks are ignored", FileHTML, "{% raw %}{{ customer.nope | nofilter }}{% endraw %}", nil},
		{"several errors", FileHTML, "{{ customer.a }}\n{{ customer.b }}", []string{"html:1: unknown variable customer.a", "html:2: unknown variable customer.b"}},
		{"manifest schema", FileManifest, "name: v\nversion: 1\ncontent:\n  recs:\n    url: http://x/recs\n    timout: 2s\n", []string{`template.yaml:6: unknown field "timout" (did you mean "timeout"?)`}},
		{"manifest on_failure", FileManifest, "name: v\nversion: 1\ndefaults: {locale: en}\ncontent:\n  recs:\n    url: http://x/recs\n    on_failure: explode\n", []string{`template.yaml:6: content recs: on_failure "explode"`}},
		{"manifest version", FileManifest, "name: v\nversion: 0\ndefaults: {locale: en}\ncontent:\n  recs:\n    url: http://x/recs\n", []string{"template.yaml:2: version must be a positive integer"}},
		{"variant weights", FileManifest, "name: v\nversion: 1\ndefaults: {locale: en}\ncontent:\n  recs:\n    url: http://x/recs\nvariants:\n  - {name: a, weight: 0}\n", []string{"template.yaml:7: variant weights add up to 0"}},
		{"unknown variable in a source URL", FileManifest, "name: v\nversion: 1\ndefaults: {locale: en}\ncontent:\n  recs:\n    url: http://x/recs?id={{ customer.id }}\n", []string{"template.yaml:6: unknown variable customer.id"}},
		{"run-time error with the sample", FileSubject, "Hi\n{{ now | date: '%Y', 'Nowhere/Land' }}", []string{"subject:2: rendering the sample"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := maps(base)
			files[tt.file] = tt.content
			errs := Validate(writeFolder(t, files), ValidateConfig{Sample: sampleProfile}).Errors
			var got []string
			for _, err := range errs {
				var se *SyntaxError
				require.True(t, errors.As(err, &se), "%T %v", err, err)
				require.NotEmpty(t, se.File)
				require.Positive(t, se.Line, err.Error())
				got = append(got, err.Error())
			}
			require.Len(t, got, len(tt.want), "%q", got)
			for i, w := range tt.want {
				require.True(t, strings.HasPrefix(got[i], w), "got %q, want prefix %q", got[i], w)
			}
		})
	}
}

func TestValidate_WithoutSampleSkipsCustomerFields(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{
		FileManifest: "name: v\nversion: 1\n",
		FileSubject:  "{{ customer.anything }}",
		FileHTML:     "{{ content.nothing }}",
		FileText:     "t",
	})
	errs := Validate(dir, ValidateConfig{}).Errors
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "html:1: unknown variable content.nothing")
}

func TestValidate_MissingFolder(t *testing.T) {
	t.Parallel()
	errs := Validate(filepath.Join(t.TempDir(), "nope"), ValidateConfig{}).Errors
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "read template folder")
}

func TestValidate_ReportsPartErrorsAlongsideABrokenManifest(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{
		FileManifest: "name: v\nversion: 1\ncontent:\n  recs: {url: 'http://x', timeout: soon}\n",
		FileSubject:  "Hi",
		FileHTML:     "<p>\n{% if %}</p>",
		FileText:     "t",
	})
	errs := Validate(dir, ValidateConfig{}).Errors
	require.Len(t, errs, 2, "%v", errs)
	require.EqualError(t, errs[0], `template.yaml:4: invalid duration "soon" (write e.g. 2s or 500ms)`)
	var se *SyntaxError
	require.ErrorAs(t, errs[1], &se)
	require.Equal(t, FileHTML, se.File)
	require.Equal(t, 2, se.Line)
}

func TestValidate_ReportsABudgetBreachWithFileAndLine(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{
		FileManifest: "name: v\nversion: 1\n",
		FileSubject:  "Hi",
		FileHTML:     "<p>\n" + `{% assign s = "xxxxxxxxxx" %}{% for i in (1..30) %}{% assign s = s | append: s %}{% endfor %}` + "</p>",
		FileText:     "t",
	})
	rep := Validate(dir, ValidateConfig{})
	require.Len(t, rep.Errors, 1, "%v", rep.Errors)
	var se *SyntaxError
	require.ErrorAs(t, rep.Errors[0], &se)
	require.Equal(t, FileHTML, se.File)
	require.Equal(t, 2, se.Line)
	require.Contains(t, se.Error(), "html:2: rendering the sample: render budget exceeded")
	var be *BudgetError
	require.ErrorAs(t, rep.Errors[0], &be)
	require.Equal(t, BudgetString, be.Budget)

	// Under a campaign's own budgets.
	rep = Validate(writeFolder(t, map[string]string{
		FileManifest: "name: v\nversion: 1\n", FileSubject: "Hi", FileText: "t",
		FileHTML: "{% for i in (1..20) %}x{% endfor %}",
	}), ValidateConfig{Budgets: Budgets{Iterations: 10}})
	require.Len(t, rep.Errors, 1)
	require.ErrorAs(t, rep.Errors[0], &be)
	require.Equal(t, BudgetIterations, be.Budget)
}

func TestValidate_WarnsWhereMailClientsHurtRecipients(t *testing.T) {
	t.Parallel()
	html := "<html>\n<img src=\"https://cdn.example/logo.png\">\n" +
		`<img src="{{ customer.avatar }}" alt="{{ customer.first_name }}">` + "\n" +
		`<a href="http://shop.example/sale">Sale</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="https://shop.example">Shop</a>` + "\n" +
		"<p>"
	// Pad the rendered part (the Liquid above renders 36 bytes shorter) to 110 KB.
	html += strings.Repeat("x", 110<<10-len(html)+36-len("</p></html>")) + "</p></html>"
	dir := writeFolder(t, map[string]string{
		FileManifest: "name: v\nversion: 1\n",
		FileSubject:  strings.Repeat("Big news ", 20),
		FileHTML:     html,
		FileText:     "t",
	})
	rep := Validate(dir, ValidateConfig{})
	require.Empty(t, rep.Errors)
	var got []string
	for _, w := range rep.Warnings {
		got = append(got, w.String())
	}
	require.ElementsMatch(t, []string{
		"html:2: warning: image without alt text: screen readers and mail clients that block images show nothing (add alt=\"...\"; alt=\"\" for decoration)",
		"html:4: warning: link without https: mail clients warn about or rewrite http:// links (use https://)",
		"html: warning: the html part renders to 110 KB for the sample; Gmail clips html over 102 KB and hides the rest, unsubscribe link included (shorten it, link to long content)",
		"subject: warning: the subject renders to 179 characters for the sample; inboxes cut subjects off long before 150 (keep it under 60)",
	}, got)

	small := writeFolder(t, map[string]string{FileManifest: "name: v\nversion: 1\n", FileSubject: "Hi", FileHTML: "<p>" + strings.Repeat("x", 100<<10) + "</p>", FileText: "t"})
	require.Empty(t, Validate(small, ValidateConfig{}).Warnings, "100 KB is not clipped")
}
