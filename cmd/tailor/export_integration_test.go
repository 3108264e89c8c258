package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

// renderedCampaign records a rendered campaign of n messages (customers x1..xN) straight in
// Postgres and returns its id.
func renderedCampaign(t *testing.T, e *cliEnv, prefix string, n int) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	require.NoError(t, e.env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment, status, started_at)
		VALUES ('export', 't', 1, '{}', 'true', 'rendered', now()) RETURNING id`).Scan(&id))
	_, err := e.env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email, subject, html, text_body, headers, not_before)
		SELECT $1, $2 || g, $2 || g || '@example.com', 'Grüße ' || g, '<p>Hi ' || g || '</p>', 'Hi ' || g,
		       '{"List-Unsubscribe": "<https://t.example/u/x>"}', now() - interval '1 minute'
		FROM generate_series(1, $3) g`, id, prefix, n)
	require.NoError(t, err)
	return id
}

func TestCLI_MessagesExportNDJSONAndEML(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	const n = 1200
	camp := renderedCampaign(t, e, "x", n)
	id := fmt.Sprint(camp)
	// One recipient unsubscribed after rendering: never exported.
	_, err := e.env.Pool.Exec(ctx, `INSERT INTO suppressions (email, reason, source) VALUES ('x5@example.com', 'unsubscribed', 'one_click')`)
	require.NoError(t, err)

	var out syncBuffer
	var stderr syncBuffer
	code := run(ctx, append(append([]string{}, e.args...), "messages", "export", "--campaign", id, "--format", "ndjson", "--out", "-", "--batch", "500"), &out, &stderr)
	require.Equal(t, exitOK, code, stderr.String())
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m delivery.Message
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		require.Equal(t, camp, m.CampaignID)
		require.Contains(t, m.HTML, "<p>Hi ")
		require.Equal(t, "<https://t.example/u/x>", m.Headers["List-Unsubscribe"])
		require.False(t, seen[m.Email], "exported once: %s", m.Email)
		seen[m.Email] = true
	}
	require.Len(t, seen, n-1)
	require.False(t, seen["x5@example.com"], "the unsubscribed recipient is left out")
	require.Contains(t, stderr.String(), "exported 1199 of")
	require.Contains(t, stderr.String(), fmt.Sprintf("campaign %s: %d messages exported as ndjson to -", id, n-1))
	c, err := delivery.CampaignCounts(ctx, e.env.Pool, camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Exported: n - 1, Suppressed: 1}, c)
	require.Contains(t, e.ok("messages", "export", "--campaign", id), "0 messages exported", "a second run finds nothing left")

	// .eml files: complete RFC 5322 messages, one per ready message.
	camp2 := renderedCampaign(t, e, "y", 3)
	dir := t.TempDir()
	e.ok("messages", "export", "--campaign", fmt.Sprint(camp2), "--format", "eml", "--out", dir, "--from", "Shop <news@shop.example>")
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	require.NoError(t, err)
	require.Len(t, files, 3)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
		require.NoError(t, err)
		require.Equal(t, "<https://t.example/u/x>", msg.Header.Get("List-Unsubscribe"))
		require.Equal(t, strings.TrimSuffix(filepath.Base(f), ".eml"), msg.Header.Get("X-Tailor-Message"))
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--campaign", id, "--format", "eml"}, "--format eml writes one file per message"},
		{[]string{"--campaign", id, "--format", "eml", "--out", dir}, "--format eml needs --from"},
		{[]string{"--campaign", id, "--format", "csv"}, `--format "csv": want ndjson or eml`},
		{[]string{"--campaign", id, "--batch", "501"}, "--batch 501"},
		{[]string{"--campaign", "0"}, "--campaign 0"},
	} {
		code, out := e.run(ctx, append([]string{"messages", "export"}, bad.args...)...)
		require.Equal(t, exitUsage, code, out)
		require.Contains(t, out, bad.want)
	}
}
