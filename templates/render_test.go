package templates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// contentServer is a fake content API: handlers by path, with a request counter.
type contentServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newContentServer(t testing.TB, routes map[string]http.HandlerFunc) *contentServer {
	t.Helper()
	cs := &contentServer{}
	mux := http.NewServeMux()
	for path, h := range routes {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			cs.requests.Add(1)
			h(w, r)
		})
	}
	cs.Server = httptest.NewServer(mux)
	t.Cleanup(cs.Close)
	return cs
}

func jsonHandler(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(body))
	}
}

const recsBody = `{"items":[{"name":"Linen shirt","url":"https://shop.example/linen","price_minor":4900,"currency":"EUR"},{"name":"Canvas tote","url":"https://shop.example/tote","price_minor":1999,"currency":"EUR"}]}`

// recsTemplate returns the files of a small template with one content source at url.
func recsTemplate(url string, sourceExtra string) map[string]string {
	return map[string]string{
		FileManifest: `name: recs
version: 3
defaults:
  first_name: there
content:
  recs:
    url: "` + url + `"
` + sourceExtra,
		FileSubject: `{{ customer.first_name }}, picked for you`,
		FileHTML:    `<p>Hi {{ customer.first_name }}</p><ul>{% for i in content.recs.items %}<li>{{ i.name }}</li>{% endfor %}</ul>`,
		FileText:    `Hi {{ customer.first_name }}{% for i in content.recs.items %} - {{ i.name }}{% endfor %}`,
	}
}

const fallbackYAML = `    fallback: {items: [{name: "Our bestsellers", url: "https://example.com/best"}]}
`

type bundle struct {
	r   *Renderer
	srv *contentServer
}

func setup(t *testing.T, h http.HandlerFunc, cfg RendererConfig) bundle {
	t.Helper()
	srv := newContentServer(t, map[string]http.HandlerFunc{"/recs": h})
	return bundle{r: NewRenderer(cfg), srv: srv}
}

func mustFromFiles(t *testing.T, files map[string]string) *Template {
	t.Helper()
	tpl, err := FromFiles(files)
	require.NoError(t, err)
	return tpl
}

func customer(id, first string) RenderData {
	return RenderData{
		Customer:       map[string]any{"customer_id": id, "first_name": first},
		Campaign:       map[string]any{"id": "cmp-1"},
		UnsubscribeURL: "https://tailor.example/u/tok",
		PreferencesURL: "https://tailor.example/p/tok",
		Now:            time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC),
	}
}

func TestRender_FetchesContentSource(t *testing.T) {
	t.Parallel()
	var auth, query atomic.Value
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		query.Store(r.URL.Query().Get("customer"))
		jsonHandler(recsBody)(w, r)
	}, RendererConfig{Getenv: func(k string) string {
		if k == "RECS_TOKEN" {
			return "s3cret"
		}
		return ""
	}})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs?customer={{ customer.customer_id | url_encode }}",
		`    headers: {Authorization: "Bearer ${RECS_TOKEN}"}
`+fallbackYAML))

	m, err := b.r.Render(context.Background(), tpl, customer("c 1&x", "Ada"))
	require.NoError(t, err)
	require.Equal(t, "Ada, picked for you", m.Subject)
	require.Equal(t, "<p>Hi Ada</p><ul><li>Linen shirt</li><li>Canvas tote</li></ul>", m.HTML)
	require.Equal(t, "Hi Ada - Linen shirt - Canvas tote", m.Text)
	require.Equal(t, "Bearer s3cret", auth.Load())
	require.Equal(t, "c 1&x", query.Load())
	require.Equal(t, "<https://tailor.example/u/tok>", m.Headers["List-Unsubscribe"])
	require.Equal(t, "List-Unsubscribe=One-Click", m.Headers["List-Unsubscribe-Post"])
	require.Equal(t, Provenance{
		Template: "recs",
		Version:  3,
		Sources:  map[string]SourceOutcome{"recs": {Outcome: OutcomeFetched, Hash: hashBytes([]byte(recsBody))}},
	}, m.Provenance)
	require.NotContains(t, tpl.Files()[FileManifest], "s3cret", "secrets are expanded at fetch time, never stored")
}

func TestRender_AppliesDefaultsForMissingFields(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonHandler(recsBody), RendererConfig{})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", ""))
	for _, profile := range []map[string]any{{}, {"first_name": nil}, {"first_name": ""}} {
		m, err := b.r.Render(context.Background(), tpl, RenderData{Customer: profile})
		require.NoError(t, err)
		require.Equal(t, "there, picked for you", m.Subject)
	}
	profile := map[string]any{"customer_id": "c1"}
	_, err := b.r.Render(context.Background(), tpl, RenderData{Customer: profile})
	require.NoError(t, err)
	require.NotContains(t, profile, "first_name", "the caller's profile is not modified")
}

func TestRender_DegradesFailingSourceToFallback(t *testing.T) {
	t.Parallel()
	big := `{"pad":"` + strings.Repeat("x", 10<<20) + `"}` // a 10 MB answer; only 1 MB is ever read
	tests := []struct {
		name    string
		handler http.HandlerFunc
		extra   string
		reason  string
	}{
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, "    timeout: 100ms\n", "timeout after 100ms"},
		{"server error", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, "", "HTTP 500"},
		{"not found", func(w http.ResponseWriter, _ *http.Request) {
			http.NotFound(w, nil)
		}, "", "HTTP 404"},
		{"invalid JSON", jsonHandler(`{"items": [`), "", "invalid JSON"},
		{"trailing garbage", jsonHandler(`{"items": []} {}`), "", "invalid JSON"},
		{"HTML body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte("<html>maintenance</html>"))
		}, "", "not JSON: text/html"},
		{"10 MB body", jsonHandler(big), "", "body over 1 MB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.handler, RendererConfig{RetryBackoff: time.Millisecond})
			tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", tt.extra+fallbackYAML))
			m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
			require.NoError(t, err)
			require.Equal(t, "Hi Ada - Our bestsellers", m.Text)
			got := m.Provenance.Sources["recs"]
			require.Equal(t, OutcomeFallback, got.Outcome)
			require.Equal(t, tt.reason, got.Reason)
			require.Equal(t, hashBytes([]byte(`{"items":[{"name":"Our bestsellers","url":"https://example.com/best"}]}`)), got.Hash)
		})
	}
}

func TestRender_FallbackIsEmptyObjectWhenNoneDeclared(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }, RendererConfig{RetryBackoff: time.Millisecond})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", ""))
	m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
	require.NoError(t, err)
	require.Equal(t, "Hi Ada", m.Text)
	require.Equal(t, SourceOutcome{Outcome: OutcomeFallback, Hash: hashBytes([]byte("{}")), Reason: "HTTP 502"}, m.Provenance.Sources["recs"])
}

func TestRender_SkipRecipientWhenSourceFails(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }, RendererConfig{RetryBackoff: time.Millisecond})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", "    on_failure: skip_recipient\n"+fallbackYAML))
	m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
	require.Nil(t, m)
	require.ErrorIs(t, err, ErrSkipRecipient)
	require.ErrorContains(t, err, "HTTP 500")
	require.ErrorContains(t, err, "content recs")
}

func TestRender_RetriesServerErrorOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		jsonHandler(recsBody)(w, r)
	}, RendererConfig{RetryBackoff: time.Millisecond})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", fallbackYAML))
	m, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
	require.NoError(t, err)
	require.Equal(t, OutcomeFetched, m.Provenance.Sources["recs"].Outcome)
	require.EqualValues(t, 2, calls.Load())
}

func TestRender_DoesNotRetryClientErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }, RendererConfig{RetryBackoff: time.Millisecond})
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", "    retries: 3\n"+fallbackYAML))
	_, err := b.r.Render(context.Background(), tpl, customer("c1", "Ada"))
	require.NoError(t, err)
	require.EqualValues(t, 1, b.srv.requests.Load())
}

func TestRender_ReturnsContextError(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, RendererConfig{})
	t.Cleanup(func() { close(release) })
	tpl := mustFromFiles(t, recsTemplate(b.srv.URL+"/recs", fallbackYAML))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := b.r.Render(ctx, tpl, customer("c1", "Ada"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestRender_EscapesProfileValuesInHTMLOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		first, html, text string
	}{
		{`<script>alert(1)</script>`, `&lt;script&gt;alert(1)&lt;/script&gt;`, `<script>alert(1)</script>`},
		{`"><a href=x>`, `&#34;&gt;&lt;a href=x&gt;`, `"><a href=x>`},
		{`{{ 7 | times: 6 }}`, `{{ 7 | times: 6 }}`, `{{ 7 | times: 6 }}`},
		{`{% if true %}yes{% endif %}`, `{% if true %}yes{% endif %}`, `{% if true %}yes{% endif %}`},
		{`Zoë & Ann`, `Zoë &amp; Ann`, `Zoë & Ann`},
	}
	m, err := NewRenderer(RendererConfig{}).Render(context.Background(), mustFromFiles(t, map[string]string{
		FileManifest: "name: esc\nversion: 1\n", FileSubject: "Hi {{ customer.first_name }}!", FileHTML: "h", FileText: "t",
	}), RenderData{Customer: map[string]any{"first_name": "Ann\r\nBcc: x@example.com"}})
	require.NoError(t, err)
	require.Equal(t, "Hi Ann Bcc: x@example.com!", m.Subject, "line breaks never reach the Subject header")
	r := NewRenderer(RendererConfig{})
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: esc\nversion: 1\n",
		FileSubject:  `{{ customer.first_name }}`,
		FileHTML:     `<p>{{ customer.first_name }}|{{- customer.first_name -}}|{{ customer.first_name | raw }}</p>`,
		FileText:     `{{ customer.first_name }}`,
	})
	for _, tt := range tests {
		m, err := r.Render(context.Background(), tpl, RenderData{Customer: map[string]any{"first_name": tt.first}})
		require.NoError(t, err)
		require.Equal(t, "<p>"+tt.html+"|"+tt.html+"|"+tt.first+"</p>", m.HTML)
		require.Equal(t, tt.text, m.Text)
		require.Equal(t, strings.TrimSpace(tt.text), m.Subject)
	}
}

func TestRender_EscapesContentValuesInHTML(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonHandler(`{"items":[{"name":"<b>Bold</b>","url":"javascript:x\" onclick=\"y"}]}`), RendererConfig{})
	files := recsTemplate(b.srv.URL+"/recs", "")
	files[FileHTML] = `{% for i in content.recs.items %}<a href="{{ i.url }}">{{ i.name }}</a>{{ i.name | raw }}{% endfor %}`
	m, err := b.r.Render(context.Background(), mustFromFiles(t, files), customer("c1", "Ada"))
	require.NoError(t, err)
	require.Equal(t, `<a href="javascript:x&#34; onclick=&#34;y">&lt;b&gt;Bold&lt;/b&gt;</a><b>Bold</b>`, m.HTML)
}

func TestRender_HTMLEscapingKeepsLiquidFeatures(t *testing.T) {
	t.Parallel()
	r := NewRenderer(RendererConfig{})
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: esc\nversion: 1\n",
		FileSubject:  `s`,
		FileHTML: `{% capture greeting %}<b>{{ customer.first_name }}</b>{% endcapture %}{{ greeting }}` +
			`{% assign n = customer.first_name | size %}{{ n }}` +
			`{% raw %}{{ not.rendered }}{% endraw %}` +
			`{{ customer.tags }}{{ customer.tags | join: ", " }}{{ customer.score | plus: 1 }}`,
		FileText: `t`,
	})
	m, err := r.Render(context.Background(), tpl, RenderData{Customer: map[string]any{
		"first_name": "<i>", "tags": []any{"a&b", "<c>"}, "score": 41,
	}})
	require.NoError(t, err)
	require.Equal(t, `<b>&lt;i&gt;</b>3{{ not.rendered }}a&amp;b&lt;c&gt;a&amp;b, &lt;c&gt;42`, m.HTML)
}

func TestRender_IncludeIsDisabled(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: inc\nversion: 1\n",
		FileSubject:  `s`,
		FileHTML:     `{% include "/etc/passwd" %}`,
		FileText:     `t`,
	})
	_, err := NewRenderer(RendererConfig{}).Render(context.Background(), tpl, RenderData{})
	require.ErrorContains(t, err, "include tag is not supported")
}

func TestFromFiles_SyntaxErrorNamesFileAndLine(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		FileManifest: "name: x\nversion: 1\n",
		FileSubject:  "s",
		FileHTML:     "h",
		FileText:     "t",
	}
	tests := []struct {
		file, content string
		line          int
		msg           string
	}{
		{FileHTML, "<p>\n\n{% if x %}\nunclosed", 3, "unterminated"},
		{FileHTML, "<p>\n{{ customer.name | | }}", 2, ""},
		{FileText, "line1\n{% for %}", 2, ""},
		{FileSubject, "{% endif %}", 1, ""},
		{FileManifest, "name: x\nversion: 1\ncontent:\n  recs:\n    url: http://x\n    timeout: soon\n", 6, "invalid duration"},
		{FileManifest, "name: x\nversion: 1\nbogus: 1\n", 3, "bogus"},
		{FileManifest, "name: x\nversion: [\n", 2, ""},
	}
	for _, tt := range tests {
		files := maps(base)
		files[tt.file] = tt.content
		_, err := FromFiles(files)
		var se *SyntaxError
		require.ErrorAs(t, err, &se, "%s: %q", tt.file, tt.content)
		require.Equal(t, tt.file, se.File, "%q", tt.content)
		require.Equal(t, tt.line, se.Line, "%q: %v", tt.content, err)
		require.Contains(t, se.Msg, tt.msg)
		require.NotContains(t, se.Msg, autoescapeFilter)
		require.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("%s:%d: ", tt.file, tt.line)), err.Error())
	}
}

func TestFromFiles_RoundTripsThroughJSON(t *testing.T) {
	t.Parallel()
	tpl, err := Load("examples/welcome")
	require.NoError(t, err)
	require.Equal(t, "welcome", tpl.Name())
	require.Equal(t, 1, tpl.Version())
	raw, err := json.Marshal(tpl.Files())
	require.NoError(t, err)
	var files map[string]string
	require.NoError(t, json.Unmarshal(raw, &files))
	again, err := FromFiles(files)
	require.NoError(t, err)
	require.Equal(t, tpl.Files(), again.Files())
	require.Contains(t, files, FileHTML)
}

func TestLoad_MissingFolder(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/does-not-exist")
	require.Error(t, err)
	var se *SyntaxError
	require.False(t, errors.As(err, &se))
}
