package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/localstack"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

// The sender's path end to end: a campaign renders (tailor work) while tailor relay delivers
// it to the in-repo SMTP sink, which refuses one address for good (550: a hard bounce, the
// address suppressed) and another once (451: retried, then sent); the relay exits when the
// campaign is done, and the outcome events leave the outbox for the stream.
func TestCLI_RelayDeliversACampaignToTheSink(t *testing.T) {
	e := newCLIEnv(t)
	const n = 300
	seedProfiles(t, e, "r", n)
	rules := []smtpsink.Rule{}
	for _, s := range []string{"550=r7@example.com", "451=r9@example.com:times=1"} {
		r, err := smtpsink.ParseRule(s)
		require.NoError(t, err)
		rules = append(rules, r)
	}
	sink, err := smtpsink.Start(smtpsink.Config{Addr: "127.0.0.1:0", Rules: rules, Store: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close() })

	require.Contains(t, e.ok("template", "publish", "../../templates/examples/welcome"), "welcome")
	id := createdID(t, e.ok("campaign", "create", "--template", "welcome@1", "--segment", "true", "--name", "relay test", "--send-at", "now"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workDone := make(chan int, 1)
	go func() {
		code, _ := e.run(ctx, "work")
		workDone <- code
	}()
	// The in-process commands share slog's default logger: work finishes before the relay
	// runs, so the relay's log is its own.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(e.ok("campaign", "show", id), "status    rendered") {
		require.True(t, time.Now().Before(deadline), "campaign %s not rendered in time", id)
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	require.Equal(t, exitOK, <-workDone)
	code, out := e.run(context.Background(), "relay", "--smtp", sink.URL(), "--from", "Shop <news@shop.example>", "--campaign", id,
		"--exit-when-done", "--concurrency", "4", "--retry-base", "50ms", "--retry-max", "100ms", "--progress", "0")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "relay done")

	st := sink.Stats()
	require.Equal(t, int64(n-1), st.Accepted, "everyone but the hard bounce")
	require.Equal(t, int64(1), st.Rejected5xx)
	require.Equal(t, int64(1), st.Rejected4xx)
	seen := map[string]int{}
	for _, m := range sink.Messages() {
		seen[m.To[0]]++
		require.Contains(t, string(m.Data), "X-Tailor-Campaign: "+id+"\r\n")
	}
	require.Len(t, seen, n-1)
	for to, k := range seen {
		require.Equal(t, 1, k, "%s got one message", to)
	}

	cid, err := strconv.ParseInt(id, 10, 64)
	require.NoError(t, err)
	c, err := delivery.CampaignCounts(context.Background(), e.env.Pool, cid)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Sent: n - 1, BouncedHard: 1}, c)
	var reason string
	require.NoError(t, e.env.Pool.QueryRow(context.Background(), `SELECT reason FROM suppressions WHERE email = 'r7@example.com'`).Scan(&reason))
	require.Equal(t, "hard_bounce", reason)
	pending, err := delivery.Pending(context.Background(), e.env.Pool)
	require.NoError(t, err)
	require.Zero(t, pending, "the relay's outbox published every outcome event before it exited")

	require.Contains(t, e.ok("campaign", "status", id), fmt.Sprintf("delivery: sent %d, bounced 1 (hard 1, soft 0), complained 0, failed 0, suppressed 0, waiting: ready 0", n-1))
	report := e.ok("campaign", "report", id)
	require.Regexp(t, fmt.Sprintf(`(?m)^delivery\n  sent +%d\n  bounced hard +1\n`, n-1), report)
	code, out = e.run(context.Background(), "relay", "--from", "news@shop.example")
	require.Equal(t, exitUsage, code)
	require.Contains(t, out, "--smtp smtp://host:port or --ses")
	code, out = e.run(context.Background(), "relay", "--smtp", sink.URL(), "--from", "news@shop.example", "--exit-when-done")
	require.Equal(t, exitUsage, code)
	require.Contains(t, out, "--exit-when-done needs --campaign")
	code, out = e.run(context.Background(), "relay", "--smtp", "http://x", "--from", "news@shop.example")
	require.Equal(t, exitUsage, code)
	require.True(t, strings.Contains(out, "SMTP URL"), out)
}

// tailor serve's sender API as a sender sees it: a send-scoped key claims (MIME, with
// --from), acks, and the ack's event leaves the outbox that serve publishes.
func TestCLI_ServeSenderAPI(t *testing.T) {
	e := newCLIEnv(t)
	camp := renderedCampaign(t, e, "s", 3)
	m := regexp.MustCompile(`key:    (tlr_[a-z2-7]+)\n`).FindStringSubmatch(e.ok("apikey", "create", "--name", "relay", "--scopes", "send"))
	require.NotNil(t, m)
	key := m[1]
	base, stop := e.serve("--from", "Shop <news@shop.example>")
	defer stop()

	post := func(path, body string, out any) int {
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
		return resp.StatusCode
	}
	var claim struct {
		Messages []struct {
			ID      int64  `json:"id"`
			Receipt string `json:"receipt"`
			Raw     string `json:"raw"`
		} `json:"messages"`
	}
	require.Equal(t, http.StatusOK, post("/v1/messages/claim", fmt.Sprintf(`{"limit": 10, "campaign": %d, "format": "mime"}`, camp), &claim))
	require.Len(t, claim.Messages, 3)
	require.Contains(t, claim.Messages[0].Raw, "From: \"Shop\" <news@shop.example>\r\n")
	var ack struct {
		Results []struct{ Result string } `json:"results"`
	}
	body := fmt.Sprintf(`{"outcomes": [{"id": %d, "receipt": %q, "status": "bounced", "bounce": "hard", "reply": "550 no such user"}]}`,
		claim.Messages[0].ID, claim.Messages[0].Receipt)
	require.Equal(t, http.StatusOK, post("/v1/messages/ack", body, &ack))
	require.Equal(t, "acked", ack.Results[0].Result)
	waitFor(t, 30*time.Second, func() error {
		n, err := delivery.Pending(context.Background(), e.env.Pool)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d events still in the outbox", n)
		}
		return err
	})
	require.Contains(t, e.ok("campaign", "status", fmt.Sprint(camp)), "bounced 1 (hard 1, soft 0)")
}

// tailor relay --ses through the real sesv2 client against an SES v2 emulator
// (aws-ses-v2-local, which parses the raw MIME it gets): every message arrives once with its
// UTF-8 subject, From and To intact, and each is acked sent with SES's message id.
func TestCLI_RelaySendsThroughSES(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	ses, err := localstack.StartSES(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { _ = ses.Stop(context.Background()) })
	const n = 25
	camp := renderedCampaign(t, e, "s", n)
	id := fmt.Sprint(camp)

	code, out := e.run(ctx, "relay", "--ses", "--ses-endpoint", ses.URL, "--from", "Shop <news@shop.example>", "--campaign", id,
		"--exit-when-done", "--concurrency", "4", "--progress", "0")
	require.Equal(t, exitOK, code, out)

	resp, err := http.Get(ses.URL + "/store")
	require.NoError(t, err)
	defer resp.Body.Close()
	var store struct {
		Emails []struct {
			MessageID   string `json:"messageId"`
			From        string `json:"from"`
			Subject     string `json:"subject"`
			Destination struct {
				To []string `json:"to"`
			} `json:"destination"`
			Body struct {
				HTML string `json:"html"`
			} `json:"body"`
		} `json:"emails"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&store))
	require.Len(t, store.Emails, n)
	got := map[string]string{} // SES message id -> recipient
	for _, m := range store.Emails {
		require.Len(t, m.Destination.To, 1)
		to := m.Destination.To[0]
		i := strings.TrimSuffix(strings.TrimPrefix(to, "s"), "@example.com")
		require.Equal(t, "Grüße "+i, m.Subject, "the UTF-8 subject survives SES's MIME parser")
		require.Equal(t, `"Shop" <news@shop.example>`, m.From)
		require.Contains(t, m.Body.HTML, "<p>Hi "+i+"</p>")
		got[m.MessageID] = to
	}
	rows, err := e.env.Pool.Query(ctx, `SELECT provider_id, email FROM rendered_messages WHERE campaign_id = $1 AND delivery = 'sent'`, camp)
	require.NoError(t, err)
	acked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (out [2]string, err error) { return out, r.Scan(&out[0], &out[1]) })
	require.NoError(t, err)
	require.Len(t, acked, n, "every message acked as sent")
	for _, a := range acked {
		require.Equal(t, got[a[0]], a[1], "acked with the message id SES answered for that recipient")
	}
	pending, err := delivery.Pending(ctx, e.env.Pool)
	require.NoError(t, err)
	require.Zero(t, pending, "the email_sent events left the outbox for the stream")

	code, out = e.run(ctx, "relay", "--ses", "--ses-endpoint", "email.example", "--from", "news@shop.example")
	require.Equal(t, exitUsage, code)
	require.Contains(t, out, "--ses-endpoint \"email.example\": want an http(s) URL")
}
