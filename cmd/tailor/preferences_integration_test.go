package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The preference center through the CLI: the topics catalogue, a signed webhook to tailor
// serve built from 'tailor webhook sign', the page behind --token-key, export and forget.
func TestCLI_PreferenceCenter(t *testing.T) {
	e := newCLIEnv(t)
	e.ok("migrate")
	require.Contains(t, e.ok("topic", "create", "--description", "Weekly news", "news"), "topic news created (default unsubscribed)")
	e.ok("topic", "create", "--default", "subscribed", "tips")
	for _, bad := range [][]string{{"topic", "create", "news"}, {"topic", "create", "Bad Name"}, {"topic", "create", "--default", "maybe", "x"}, {"topic", "create", "news", "--default", "subscribed"},
		{"topic", "archive", "nope"}, {"customer", "forget"}, {"webhook", "sign", "--secret", "nope", "-"}} {
		code, out := e.run(context.Background(), bad...)
		require.Equal(t, exitUsage, code, "%v: %s", bad, out)
	}
	list := e.ok("topic", "list")
	require.Contains(t, list, "news")
	require.Contains(t, list, "Weekly news")

	secret := strings.TrimSpace(e.ok("webhook", "secret"))
	require.True(t, strings.HasPrefix(secret, "whsec_"), secret)
	require.Contains(t, e.ok("webhook", "schema"), `"occurred_at"`)
	_, err := e.env.Pool.Exec(t.Context(), `INSERT INTO customers (id, email, locale) VALUES ('c-1', 'cli@example.com', 'fr')`)
	require.NoError(t, err)

	base, stop := e.serve("--webhook-secret", secret, "--token-key", "k1="+strings.TrimPrefix(secret, "whsec_"), "--public-url", "http://127.0.0.1")
	file := filepath.Join(t.TempDir(), "change.json")
	body := `{"customer_id":"c-1","occurred_at":"` + time.Now().UTC().Format(time.RFC3339) + `","topics":{"news":"subscribed"}}`
	require.NoError(t, os.WriteFile(file, []byte(body), 0o644))
	headers := e.ok("webhook", "sign", "--secret", secret, "--id", "msg_cli", file)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/webhooks/preferences", strings.NewReader(body))
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(headers), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		require.True(t, ok, line)
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(answer))
	require.Contains(t, string(answer), `"applied":{"topics":["news"]`)

	// A bad link shows the error page; the page itself needs a token 'tailor work' would mint.
	resp, err = http.Get(base + "/preferences/not-a-token")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), `tailor_preference_webhooks_total{outcome="accepted"} 1`)
	stop()

	var exported struct {
		Customers     []map[string]any `json:"customers"`
		Subscriptions []map[string]any `json:"subscriptions"`
	}
	require.NoError(t, json.Unmarshal([]byte(e.ok("customer", "export", "CLI@example.com")), &exported))
	require.Len(t, exported.Customers, 1)
	require.Equal(t, "news", exported.Subscriptions[0]["topic"])
	require.Contains(t, e.ok("customer", "forget", "c-1"), "forgot 1 customer(s)")
	code, out := e.run(context.Background(), "customer", "export", "cli@example.com")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "nothing is held")
	require.Contains(t, e.ok("topic", "archive", "news"), "topic news archived")
	require.NotContains(t, e.ok("topic", "list"), "news")
	require.Contains(t, e.ok("topic", "list", "--all"), "news")
}
