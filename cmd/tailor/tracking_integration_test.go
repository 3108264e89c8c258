package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/profile"
)

func TestCLI_CampaignCreateRefusesUnknownTrackValues(t *testing.T) {
	code, out := runCLI(t, "campaign", "create", "--template", "../../templates/examples/welcome", "--segment", "true", "--track", "opens,links")
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, out, `--track: unknown tracking value "links": want opens, clicks or both (opens,clicks)`)
}

// campaign create --track opens,clicks: show and status say so, tailor work renders tracking
// links under --public-url, and tailor serve redirects a click, puts an email_click in the
// outbox and counts it for campaign status and report (a tampered link: 400, nothing recorded).
func TestCLI_TrackedCampaignRecordsClicksThroughServe(t *testing.T) {
	e := newCLIEnv(t)
	e.ok("migrate") // the profiles table
	ctx := context.Background()
	store := profile.NewStore(e.env.DynamoDB, e.env.Names.Profiles)
	for i := range 2 {
		_, err := store.ApplyCRM(ctx, fmt.Sprintf("trk-%d", i), uint64(10+i), map[string]any{"email": fmt.Sprintf("trk%d@example.com", i)}, nil)
		require.NoError(t, err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"template.yaml": "name: tracked\nversion: 1\n", "subject": "Hi", "text": "Hi",
		"html": `<html><body><a href="https://shop.example.com/sale?c={{ customer.customer_id }}">Sale</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>`,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	key := "k1=" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	base, stop := e.serve("--token-key", key)
	defer stop()

	out := e.ok("campaign", "create", "--template", dir, "--segment", "true", "--send-at", "now", "--track", "opens,clicks")
	id := regexp.MustCompile(`campaign (\d+) created`).FindStringSubmatch(out)[1]
	require.Contains(t, e.ok("campaign", "show", id), "track     opens,clicks")
	require.Contains(t, e.ok("campaign", "status", id), "tracking: opens,clicks")

	wctx, cancel := context.WithCancel(ctx)
	workDone := make(chan int, 1)
	go func() {
		code, _ := e.run(wctx, "work", "--public-url", base, "--token-key", key)
		workDone <- code
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(e.ok("campaign", "show", id), "status    rendered") {
		require.True(t, time.Now().Before(deadline), "campaign %s not rendered in time", id)
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	require.Equal(t, exitOK, <-workDone)

	var html string
	require.NoError(t, e.env.Pool.QueryRow(ctx, "SELECT html FROM rendered_messages WHERE campaign_id = $1 AND customer_id = 'trk-0'", id).Scan(&html))
	require.Contains(t, html, `<img src="`+base+`/t/o/`)
	require.Contains(t, html, `href="`+base+`/unsubscribe/`, "the unsubscribe link stays as it is")
	click := regexp.MustCompile(`href="(` + regexp.QuoteMeta(base) + `/t/c/[^"]+)"`).FindStringSubmatch(html)
	require.NotNil(t, click, html)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(click[1])
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "https://shop.example.com/sale?c=trk-0", resp.Header.Get("Location"))
	resp, err = noFollow.Get(click[1][:len(click[1])-3] + "AAA")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Location"))

	// status and report count the click (one message clicked once), and no open; with
	// nothing sent yet, no rates.
	require.Contains(t, e.ok("campaign", "status", id), "  engagement: opened 0 (0 opens), clicked 1 (1 clicks)\n")
	report := e.ok("campaign", "report", id)
	require.Contains(t, report, "\n  opened       0\n  opens        0\n  clicked      1\n  clicks       1\n")
	require.NotContains(t, report, "click rate")

	// serve publishes the outbox: the click reaches the stream, and the consumer counts it
	// on trk-0's profile; the tampered link recorded nothing.
	cctx, stopConsume := context.WithCancel(ctx)
	consumeDone := make(chan int, 1)
	go func() { code, _ := e.run(cctx, "consume"); consumeDone <- code }()
	deadline = time.Now().Add(time.Minute)
	for !strings.Contains(e.ok("segment", "count", "customer_id == 'trk-0' && count_email_click == 1"), "1 profiles match") {
		require.True(t, time.Now().Before(deadline), "the click never reached trk-0's profile")
		time.Sleep(200 * time.Millisecond)
	}
	stopConsume()
	require.Equal(t, exitOK, <-consumeDone)
	require.Contains(t, e.ok("segment", "count", "count_email_click > 1 || (customer_id != 'trk-0' && count_email_click > 0)"), "0 profiles match")
	var n int
	require.NoError(t, e.env.Pool.QueryRow(ctx, "SELECT count(*) FROM delivery_outbox").Scan(&n))
	require.Zero(t, n, "published and deleted")
}
