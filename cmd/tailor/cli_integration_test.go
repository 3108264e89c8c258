package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// cliEnv runs CLI commands against one test's isolated slice of the local stack.
type cliEnv struct {
	t    testing.TB
	env  *testenv.Env
	args []string
}

func newCLIEnv(t testing.TB) *cliEnv {
	env := testenv.New(t)
	return &cliEnv{t: t, env: env, args: []string{"tailor", "--dir", env.Stack.Dir, "--database-url", env.DatabaseURL, "--prefix", env.Names.Prefix}}
}

func (e *cliEnv) run(ctx context.Context, args ...string) (int, string) {
	var out syncBuffer
	code := run(ctx, append(append([]string{}, e.args...), args...), &out, &out)
	return code, out.String()
}

func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	code, out := e.run(context.Background(), args...)
	require.Equal(e.t, exitOK, code, "tailor %s:\n%s", strings.Join(args, " "), out)
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The marketer's path through the CLI: migrate, publish a template, create a campaign from the
// published version, let `tailor work` render it, list the messages.
func TestCLI_PublishCampaignWorkList(t *testing.T) {
	e := newCLIEnv(t)
	require.Contains(t, e.ok("migrate"), "schema is current", "testenv migrated already; a second run applies nothing")

	store := profile.NewStore(e.env.DynamoDB, e.env.Names.Profiles)
	for i := range 5 {
		_, err := store.ApplyCRM(context.Background(), fmt.Sprintf("cli-%d", i), uint64(10+i),
			map[string]any{"email": fmt.Sprintf("cli%d@example.com", i), "first_name": fmt.Sprintf("Cli%d", i)}, nil)
		require.NoError(t, err)
	}

	require.Contains(t, e.ok("template", "publish", "../../templates/examples/welcome"), "welcome")
	code, out := e.run(context.Background(), "campaign", "create", "--template", "nosuch@1", "--segment", "true")
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, out, "no published template")

	out = e.ok("campaign", "create", "--template", "welcome@1", "--segment", "true", "--name", "cli test", "--send-at", "now")
	m := regexp.MustCompile(`campaign (\d+) created`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	id := m[1]

	// tailor work until the campaign is rendered, then a soft stop through the context.
	ctx, cancel := context.WithCancel(context.Background())
	workDone := make(chan int, 1)
	go func() {
		code, _ := e.run(ctx, "work")
		workDone <- code
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(e.ok("campaign", "show", id), "status    rendered") {
		require.True(t, time.Now().Before(deadline), "campaign %s not rendered in time", id)
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-workDone:
		require.Equal(t, exitOK, code, "tailor work stops cleanly on its signal")
	case <-time.After(45 * time.Second):
		t.Fatal("tailor work did not stop")
	}

	require.Contains(t, e.ok("campaign", "list"), "cli test")
	var got []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.ok("messages", "list", "--campaign", id, "--format", "json", "--limit", "0")))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var msg map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &msg))
		got = append(got, msg)
	}
	require.Len(t, got, 5)
	for _, msg := range got {
		require.Equal(t, "rendered", msg["status"])
		first := "Cli" + strings.TrimPrefix(msg["customer_id"].(string), "cli-")
		require.Equal(t, first+", picked for you", msg["subject"])
	}
}

// serve runs tailor serve with args on a free loopback port until stop, which waits for it to
// exit 0; it returns once /healthz answers.
func (e *cliEnv) serve(args ...string) (base string, stop func()) {
	t := e.t
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan int, 1)
	go func() {
		code, _ := e.run(ctx, append([]string{"serve", "--addr", addr}, args...)...)
		served <- code
	}()
	base = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "serve never answered: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
	return base, func() {
		cancel()
		select {
		case code := <-served:
			require.Equal(t, exitOK, code)
		case <-time.After(30 * time.Second):
			t.Fatal("tailor serve did not stop")
		}
	}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// tailor serve: ingestion with hashed API keys, health, readiness and metrics.
func TestCLI_ServeIngestsWithAPIKey(t *testing.T) {
	e := newCLIEnv(t)
	e.ok("migrate")
	out := e.ok("apikey", "new")
	m := regexp.MustCompile(`key:  (\S+)\nhash: ([0-9a-f]{64})`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	key, hash := m[1], m[2]

	code, out := e.run(context.Background(), "serve", "--api-key-hash", "not-a-hash")
	require.Equal(t, exitUsage, code, out)

	base, stop := e.serve("--api-key-hash", hash, "--shards", "1")
	post := func(auth, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/events", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	event := fmt.Sprintf(`{"event_id":"e1","customer_id":"c1","type":"page_view","timestamp":%q,"properties":{"url":"https://shop.example/"}}`, time.Now().UTC().Format(time.RFC3339))
	status, body := post("", event)
	require.Equal(t, http.StatusUnauthorized, status, body)
	status, body = post("tlr_wrong", event)
	require.Equal(t, http.StatusUnauthorized, status, body)
	status, body = post(key, event)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "accepted")

	resp, err := http.Get(base + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), "go_goroutines")

	stop()
}

// tailor template validate and preview: a broken template names file and line; a preview
// renders a real profile with live content and says where each source's content came from.
func TestCLI_TemplateValidateAndPreview(t *testing.T) {
	e := newCLIEnv(t)
	require.Contains(t, e.ok("template", "validate", "../../templates/examples/welcome"), "ok")

	broken := t.TempDir()
	for name, body := range map[string]string{
		"template.yaml": "name: broken\nversion: 1\n",
		"subject":       "Hi {{ customer.first_name }}",
		"html":          "<p>\n{% if customer.first_name %}\nno end tag\n",
		"text":          "Hi",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(broken, name), []byte(body), 0o644))
	}
	code, out := e.run(context.Background(), "template", "validate", broken)
	require.Equal(t, exitFailure, code, out)
	require.Regexp(t, `html:\d+: `, out, "errors name file and line")

	store := profile.NewStore(e.env.DynamoDB, e.env.Names.Profiles)
	require.NoError(t, store.EnsureTable(context.Background()))
	_, err := store.ApplyCRM(context.Background(), "pv-1", 7, map[string]any{"email": "pv@example.com", "first_name": "<b>Zoé</b>"}, nil)
	require.NoError(t, err)
	content := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":[{"name":"Preview pick","url":"https://shop.example/p/1"}]}`)
	}))
	defer content.Close()
	t.Setenv("TAILOR_CONTENT_URL", content.URL)
	htmlOut := filepath.Join(t.TempDir(), "preview.html")
	out = e.ok("template", "preview", "--customer", "pv-1", "--out", htmlOut, "../../templates/examples/welcome")
	require.Contains(t, out, "<b>Zoé</b>, picked for you", "the subject is not HTML-escaped")
	require.Contains(t, out, "fetched")
	require.Contains(t, out, "Preview pick")
	html, err := os.ReadFile(htmlOut)
	require.NoError(t, err)
	require.Contains(t, string(html), "&lt;b&gt;Zoé&lt;/b&gt;", "the html part escapes profile values")
	require.NotContains(t, string(html), "<b>Zoé</b>")

	code, out = e.run(context.Background(), "template", "preview", "--customer", "nobody", "../../templates/examples/welcome")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "nobody")
}

// tailor template validate and preview stop a template that would render without bounds and
// name the budget, file and line; validate prints warnings and still exits 0 for them alone.
func TestCLI_TemplateBudgets(t *testing.T) {
	e := newCLIEnv(t)
	writeTemplate := func(html string) string {
		dir := t.TempDir()
		for name, body := range map[string]string{
			"template.yaml": "name: hostile\nversion: 1\n",
			"subject":       "Hi {{ customer.first_name }}",
			"html":          html,
			"text":          "Hi",
		} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
		}
		return dir
	}
	hostile := writeTemplate("<p>\n{% for i in (1..100000000) %}x{% endfor %}</p>")
	code, out := e.run(context.Background(), "template", "validate", hostile)
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, filepath.Join(hostile, "html")+":2: rendering the sample: render budget exceeded: loops ran over 100000 iterations")

	warned := writeTemplate("<p>\n<img src=\"https://cdn.example/logo.png\"></p>")
	out = e.ok("template", "validate", warned)
	require.Contains(t, out, filepath.Join(warned, "html")+":2: warning: image without alt text")
	require.Contains(t, out, "ok, 1 warning(s)")

	store := profile.NewStore(e.env.DynamoDB, e.env.Names.Profiles)
	require.NoError(t, store.EnsureTable(context.Background()))
	_, err := store.ApplyCRM(context.Background(), "budget-1", 1, map[string]any{"email": "b@example.com", "first_name": "Bo"}, nil)
	require.NoError(t, err)
	code, out = e.run(context.Background(), "template", "preview", "--customer", "budget-1", hostile)
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "render template hostile: html:2: render budget exceeded: loops ran over 100000 iterations")
}
