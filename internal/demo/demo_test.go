package demo_test

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/demo"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/delivery"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func exampleTemplate(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Join(filepath.Dir(file), "..", "..", "templates", "examples", "welcome")
}

// The walking skeleton end to end: Postgres row -> CDC -> profile; Kinesis event -> consumer ->
// profile; campaign -> River -> content API -> Liquid -> rendered_messages.
func TestRun_SkeletonEndToEnd(t *testing.T) {
	env := testenv.New(t)
	var out bytes.Buffer
	res, err := demo.Run(context.Background(), env.Backends, demo.Config{TemplateDir: exampleTemplate(t), Customers: 12, Views: 2, Out: &out})
	require.NoError(t, err, out.String())
	require.Equal(t, 12, res.Customers)
	require.Equal(t, 24, res.Events)
	require.Len(t, res.Messages, 12, "every seeded customer viewed products, so all are in the segment")
	seen := map[string]bool{}
	for _, m := range res.Messages {
		require.Equal(t, "rendered", m.Status)
		require.False(t, seen[m.CustomerID], "one message per customer")
		seen[m.CustomerID] = true
		// The first name came through CDC; the greeting shows it in subject and body.
		first := strings.SplitN(m.Subject, ",", 2)[0]
		require.NotEmpty(t, first)
		require.NotEqual(t, "There", first, "the profile's first name, not the template default")
		require.Contains(t, m.Text, "Hi "+first+",")
		require.Contains(t, m.Text, "https://", "recommended items (fetched or fallback) are listed")
	}
	// The demo content service answers, so no source falls back: each is fetched, or served from
	// the cache (the daily offer's URL is the same for everyone).
	require.Zero(t, res.Outcomes["fallback"], "%v", res.Outcomes)
	require.Equal(t, 2*12, res.Outcomes["fetched"]+res.Outcomes["cached"], "two sources per message: %v", res.Outcomes)
	require.Contains(t, out.String(), "rendered 12 messages")
	// The lifecycle a marketer runs: a draft, scheduled now, rendered with its counters.
	require.Regexp(t, `campaign (\d+) created as a draft .*\n.*campaign \d+ scheduled to send now`, out.String())
	require.Regexp(t, `campaign \d+ rendered: audience 12, rendered 12, excluded 0, skipped 0, failed 0`, out.String())
	// Real preference links on the demo's preference center, and a working one-click unsubscribe.
	require.Regexp(t, `Unsubscribe: http://127\.0\.0\.1:\d+/unsubscribe/[A-Za-z0-9_-]+`, res.Messages[0].Text)
	require.Regexp(t, `one-click unsubscribe \(RFC 8058\).* -> 200 OK; demo-\d+ no longer receives marketing email \(suppressed\)`, out.String())
	// The sender stage: the relay delivers everyone but the recipient who just unsubscribed,
	// who is left out at claim.
	require.Equal(t, delivery.Counts{Sent: 11, Suppressed: 1}, res.Delivery)
	require.Contains(t, out.String(), "relay: the sink accepted 11 messages")
	require.Contains(t, out.String(), "delivered 11, suppressed 1")
}
