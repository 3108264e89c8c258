package templates

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestRender_ExpandsEnvironmentInSourceURL(t *testing.T) {
	t.Parallel()
	var query, token atomic.Value
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		query.Store(r.URL.RawQuery)
		token.Store(r.Header.Get("X-Token"))
		jsonHandler(recsBody)(w, r)
	}, RendererConfig{Getenv: envOf(map[string]string{})})

	tests := []struct {
		name string
		url  string
		env  map[string]string
	}{
		{"set", "${CONTENT_URL}/recs?c={{ customer.customer_id }}", map[string]string{"CONTENT_URL": b.srv.URL}},
		{"default when unset", "${CONTENT_URL:-" + b.srv.URL + "}/recs?c={{ customer.customer_id }}", nil},
		{"default when empty", "${CONTENT_URL:-" + b.srv.URL + "}/recs?c={{ customer.customer_id }}", map[string]string{"CONTENT_URL": ""}},
		{"set wins over default", "${CONTENT_URL:-http://127.0.0.1:1}/recs?c={{ customer.customer_id }}", map[string]string{"CONTENT_URL": b.srv.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRenderer(RendererConfig{Getenv: envOf(tt.env)})
			tpl := mustFromFiles(t, recsTemplate(tt.url, "    headers: {X-Token: \"${TOKEN:-anonymous}\"}\n"+fallbackYAML))
			// A profile value is never expanded: it is data, and the expansion runs before Liquid.
			m, err := r.Render(context.Background(), tpl, customer("${CONTENT_URL}", "Ada"))
			require.NoError(t, err)
			require.Equal(t, OutcomeFetched, m.Provenance.Sources["recs"].Outcome, m.Provenance.Sources["recs"].Reason)
			require.Equal(t, "c=${CONTENT_URL}", query.Load())
			require.Equal(t, "anonymous", token.Load())
		})
	}
}

func TestRender_EnvironmentValueIsNotLiquid(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonHandler(recsBody), RendererConfig{})
	r := NewRenderer(RendererConfig{Getenv: envOf(map[string]string{"CONTENT_URL": b.srv.URL + "/{{ customer.first_name }}"})})
	tpl := mustFromFiles(t, recsTemplate("${CONTENT_URL}/recs", fallbackYAML))
	m, err := r.Render(context.Background(), tpl, customer("c-1", "Ada"))
	require.NoError(t, err)
	o := m.Provenance.Sources["recs"]
	require.Equal(t, OutcomeFallback, o.Outcome)
	require.Contains(t, o.Reason, "CONTENT_URL must not contain Liquid delimiters")
	require.Zero(t, b.srv.requests.Load())
}

func TestExpandEnv(t *testing.T) {
	t.Parallel()
	env := envOf(map[string]string{"A": "1", "EMPTY": ""})
	for in, want := range map[string]string{
		"plain":                "plain",
		"${A}":                 "1",
		"x${A}y${A}":           "x1y1",
		"${B}":                 "",
		"${B:-dflt}":           "dflt",
		"${EMPTY:-dflt}":       "dflt",
		"${A:-dflt}":           "1",
		"${B:-http://h:1/p?q}": "http://h:1/p?q",
		"$A ${ A} ${1A} ${A":   "$A ${ A} ${1A} ${A",
		"Bearer ${B:-}":        "Bearer ",
		"${A}${B:-z}${EMPTY}":  "1z",
	} {
		require.Equal(t, want, expandEnv(in, env), in)
	}
}
