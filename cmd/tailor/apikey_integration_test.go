package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startServe runs tailor serve on a free loopback port until the test ends and returns its
// base URL once /healthz answers.
func startServe(t *testing.T, e *cliEnv, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan int, 1)
	go func() {
		code, _ := e.run(ctx, append([]string{"serve", "--addr", addr, "--shards", "1"}, args...)...)
		served <- code
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-served:
			require.Equal(t, exitOK, code)
		case <-time.After(30 * time.Second):
			t.Error("tailor serve did not stop")
		}
	})
	base := "http://" + addr
	waitFor(t, 30*time.Second, func() error {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	return base
}

// waitFor polls cond with backoff until it returns nil, and fails the test at the deadline.
func waitFor(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		require.True(t, time.Now().Before(deadline), "gave up after %v: %v", within, err)
		timer := time.NewTimer(wait)
		<-timer.C
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// The operator's path: create scoped keys, list them (never their secrets), use them against
// tailor serve, revoke one and see the server refuse it.
func TestCLI_APIKeyCreateListRevokeAgainstServe(t *testing.T) {
	e := newCLIEnv(t)
	keyRE := regexp.MustCompile(`key:    (tlr_[a-z2-7]+)\nid:     (\d+)\n`)
	out := e.ok("apikey", "create", "--name", "ingest", "--scopes", "events")
	m := keyRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	ingestKey, ingestID := m[1], m[2]
	require.Contains(t, out, "not shown again")
	out = e.ok("apikey", "create", "--name", "relay", "--scopes", "send", "--scopes", "webhooks")
	m = keyRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	relayKey := m[1]
	require.Contains(t, out, "scopes: send,webhooks")

	code, out := e.run(context.Background(), "apikey", "create", "--name", "ingest", "--scopes", "events")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, `an active API key already has that name: "ingest"`)
	code, out = e.run(context.Background(), "apikey", "create", "--name", "x", "--scopes", "sends")
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, out, `did you mean "send"?`)
	code, out = e.run(context.Background(), "apikey", "create", "--name", "9lives", "--scopes", "send")
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, out, "start with a letter")

	list := e.ok("apikey", "list")
	require.Regexp(t, `(?m)^ID\s+NAME\s+PREFIX\s+SCOPES\s+CREATED\s+LAST USED\s+REVOKED$`, list)
	require.Regexp(t, `(?m)^`+ingestID+`\s+ingest\s+`+ingestKey[:8]+`\s+events\s+\S+\s+-\s+-$`, list)
	require.NotContains(t, list, ingestKey)
	require.NotContains(t, list, relayKey)

	base := startServe(t, e)
	event := fmt.Sprintf(`{"event_id":"e1","customer_id":"c1","type":"page_view","timestamp":%q,"properties":{"url":"https://shop.example/"}}`,
		time.Now().UTC().Add(-time.Minute).Format(time.RFC3339))
	post := func(key string) int {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/events", strings.NewReader(event))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, post(ingestKey), "a key from Postgres, without any --api-key-hash")
	require.Equal(t, http.StatusForbidden, post(relayKey))
	require.Equal(t, http.StatusUnauthorized, post("tlr_nope"))

	require.Contains(t, e.ok("apikey", "revoke", "ingest"), "revoked key "+ingestID+" (ingest, "+ingestKey[:8]+")")
	waitFor(t, 30*time.Second, func() error {
		if code := post(ingestKey); code != http.StatusUnauthorized {
			return fmt.Errorf("revoked key answered %d", code)
		}
		return nil
	})
	code, out = e.run(context.Background(), "apikey", "revoke", ingestID)
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "no active API key with that name or id")

	var rows []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.ok("apikey", "list", "--format", "json")), "\n") {
		var row map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &row))
		rows = append(rows, row)
	}
	require.Len(t, rows, 2)
	require.Equal(t, "relay", rows[0]["name"])
	require.Equal(t, "ingest", rows[1]["name"])
	require.NotNil(t, rows[1]["revoked_at"])
	require.NotNil(t, rows[1]["last_used_at"], "the server recorded the key's use")
	require.NotContains(t, rows[1], "key", "no secret in the listing")
}

func TestCLI_RiverUIIsForAdminKeysOnly(t *testing.T) {
	e := newCLIEnv(t)
	keyRE := regexp.MustCompile(`key:    (tlr_[a-z2-7]+)\n`)
	admin := keyRE.FindStringSubmatch(e.ok("apikey", "create", "--name", "ops", "--scopes", "admin"))
	events := keyRE.FindStringSubmatch(e.ok("apikey", "create", "--name", "app", "--scopes", "events"))
	require.NotNil(t, admin)
	require.NotNil(t, events)
	base := startServe(t, e, "--ui")
	get := func(path, key string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "text/html,application/json") // as a browser asks
		if key != "" {
			req.SetBasicAuth("operator", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(body)
	}
	resp, _ := get("/riverui/", "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic", "the browser asks for the key")
	resp, _ = get("/riverui/", events[1])
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "an events key is no admin key")
	resp, body := get("/riverui/", admin[1])
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "<html", "the UI's page")
	resp, body = get("/riverui/api/queues", admin[1])
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"data"`, "the UI's API answers with River's data")
}
