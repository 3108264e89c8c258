package templates_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/templates"
	"github.com/tailor-email/tailor/templates/contentdemo"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestExampleWelcome_Golden(t *testing.T) {
	t.Parallel()
	tpl, err := templates.Load("examples/welcome")
	require.NoError(t, err)

	failing, err := contentdemo.NewHandler(contentdemo.Config{ErrorRate: 1})
	require.NoError(t, err)
	tests := []struct {
		name    string
		profile map[string]any
		client  *http.Client
	}{
		{"ada", map[string]any{"customer_id": "c-42", "first_name": "ada", "recently_viewed": []any{map[string]any{"product_id": "p-1", "category": "shoes"}, map[string]any{"product_id": "p-2", "category": "home"}, map[string]any{"product_id": "p-3", "category": "shoes"}}}, demoClient()},
		{"anonymous", map[string]any{"customer_id": "c-7"}, demoClient()},
		{"hostile-name-content-down", map[string]any{"customer_id": "c-9", "first_name": `bob"><script>alert(1)</script>{{ 7 | times: 6 }}`},
			&http.Client{Transport: handlerTransport{failing}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := templates.NewRenderer(templates.RendererConfig{HTTPClient: tt.client, RetryBackoff: time.Millisecond})
			m, err := r.Render(context.Background(), tpl, templates.RenderData{
				Customer:       tt.profile,
				Campaign:       map[string]any{"id": "spring"},
				UnsubscribeURL: "https://tailor.example/u/" + tt.name,
				PreferencesURL: "https://tailor.example/p/" + tt.name,
				Now:            time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC),
			})
			require.NoError(t, err)
			var meta strings.Builder
			fmt.Fprintf(&meta, "Subject: %s\nPreheader: %s\n", m.Subject, m.Preheader)
			names := make([]string, 0, len(m.Provenance.Sources))
			for name := range m.Provenance.Sources {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				o := m.Provenance.Sources[name]
				fmt.Fprintf(&meta, "Source %s: %s\n", name, strings.TrimSpace(o.Outcome+" "+o.Reason))
			}
			golden(t, tt.name+".html.golden", m.HTML)
			golden(t, tt.name+".text.golden", meta.String()+"\n"+m.Text)
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./templates -run Golden -update to create it")
	require.Equal(t, string(want), got)
}
