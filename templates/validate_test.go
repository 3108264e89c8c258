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
