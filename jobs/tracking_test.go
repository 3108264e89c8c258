package jobs_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/tracking"
)

const trackingBase = "https://t.example.test"

var clickRE = regexp.MustCompile(`href="` + regexp.QuoteMeta(trackingBase) + `/t/c/([A-Za-z0-9_-]+)"`)

func outboxTypes(t *testing.T, pool *pgxpool.Pool) []events.Event {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT payload FROM delivery_outbox ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var p []byte
		require.NoError(t, rows.Scan(&p))
		ev, err := events.Decode(p, events.DecodeOptions{})
		require.NoError(t, err)
		out = append(out, ev)
	}
	require.NoError(t, rows.Err())
	return out
}

// A campaign created with Track opens+clicks renders messages whose HTML carries signed click
// redirects and the open pixel (the unsubscribe and mailto links untouched); a hit on a click
// link redirects to its target and puts an email_click in delivery_outbox, a tampered one gets
// 400 and adds nothing; a campaign without tracking renders its HTML untouched.
func TestCampaign_TrackedMessagesCarryTrackingLinksThatRecordClicks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	seedProfiles(t, b.profiles, 3, func(int) bool { return true })
	key, err := tracking.DeriveKey("k1", bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	tokens, err := tracking.NewTokens(tracking.TokensConfig{Keys: []tracking.Key{key}})
	require.NoError(t, err)
	rewriter, err := tracking.NewRewriter(trackingBase, tokens)
	require.NoError(t, err)
	client, err := jobs.NewClient(jobs.Config{Pool: b.env.Pool, Profiles: &jobs.DynamoProfiles{Store: b.profiles, DB: b.env.DynamoDB},
		Tracker: rewriter, Links: func(campaignID int64, _, customerID string) (string, string) {
			return trackingBase + "/unsubscribe/u-" + customerID, trackingBase + "/preferences/u-" + customerID
		}})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	})
	rc, err := jobs.NewInsertClient(b.env.Pool)
	require.NoError(t, err)
	tpl := writeFiles(t, map[string]string{
		"template.yaml": "name: tracked\nversion: 1\n", "subject": "Hi",
		"html": `<html><body><p>Hi {{ customer.first_name }}</p><a href="https://shop.example.com/p?c={{ customer.customer_id }}&amp;u=1">Shop</a>` +
			` <a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="mailto:help@example.com">Help</a></body></html>`,
		"text": "Hi {{ customer.first_name }} https://shop.example.com/p",
	})
	render := func(track tracking.Track) []jobs.Message {
		camp, err := jobs.CreateCampaign(ctx, b.env.Pool, rc, jobs.NewCampaign{Template: tpl, Segment: "true", SendAt: sendNow(), Track: track})
		require.NoError(t, err)
		require.Equal(t, track, camp.Track, "the campaign keeps what it tracks")
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		done, err := jobs.WaitCampaign(waitCtx, b.env.Pool, camp.ID)
		require.NoError(t, err)
		require.Equal(t, jobs.StatusRendered, done.Status, done.Error)
		msgs, err := jobs.ListMessages(ctx, b.env.Pool, camp.ID, 0, 100)
		require.NoError(t, err)
		require.Len(t, msgs, 3)
		return msgs
	}

	tracked := render(tracking.Track{Opens: true, Clicks: true})
	h, err := tracking.NewHandler(tracking.HandlerConfig{Tokens: tokens, Recorder: tracking.NewRecorder(b.env.Pool)})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Register(mux)
	for _, m := range tracked {
		require.NotContains(t, m.HTML, `href="https://shop.example.com`, "the shop link is rewritten")
		require.Contains(t, m.HTML, `href="`+trackingBase+"/unsubscribe/u-"+m.CustomerID+`"`, "the unsubscribe link stays")
		require.Contains(t, m.HTML, `href="mailto:help@example.com"`)
		require.Contains(t, m.HTML, `<img src="`+trackingBase+`/t/o/`)
		require.True(t, strings.HasSuffix(m.HTML, `</body></html>`), "the pixel goes before </body>")
		require.Equal(t, "Hi Name"+strings.TrimPrefix(m.CustomerID, "c")+" https://shop.example.com/p", m.Text, "the text part is left alone")
		links := clickRE.FindAllStringSubmatch(m.HTML, -1)
		require.Len(t, links, 1)
		c, err := tokens.Parse(links[0][1])
		require.NoError(t, err)
		require.Equal(t, m.CustomerID, c.CustomerID)
		require.Equal(t, m.CampaignID, c.CampaignID)
	}

	m := tracked[0]
	tok := clickRE.FindStringSubmatch(m.HTML)[1]
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/t/c/"+tok, nil))
	require.Equal(t, http.StatusFound, w.Code)
	require.Equal(t, "https://shop.example.com/p?c="+m.CustomerID+"&u=1", w.Header().Get("Location"))
	evs := outboxTypes(t, b.env.Pool)
	require.Len(t, evs, 1)
	require.Equal(t, events.TypeEmailClick, evs[0].Type)
	require.Equal(t, m.CustomerID, evs[0].CustomerID)
	require.Equal(t, "https://shop.example.com/p?c="+m.CustomerID+"&u=1", evs[0].Properties.URL)
	require.Equal(t, strconv.FormatInt(m.ID, 10), evs[0].Properties.MessageID, "the event names the rendered message")

	bad := []byte(tok)
	bad[len(bad)/2] ^= 1
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/t/c/"+string(bad), nil))
	require.GreaterOrEqual(t, w.Code, 400)
	require.Less(t, w.Code, 500)
	require.Empty(t, w.Header().Get("Location"))
	require.Len(t, outboxTypes(t, b.env.Pool), 1, "a tampered link records nothing")

	for _, m := range render(tracking.Track{}) {
		require.Equal(t, `<html><body><p>Hi Name`+strings.TrimPrefix(m.CustomerID, "c")+`</p><a href="https://shop.example.com/p?c=`+m.CustomerID+
			`&amp;u=1">Shop</a> <a href="`+trackingBase+`/unsubscribe/u-`+m.CustomerID+`">Unsubscribe</a> <a href="mailto:help@example.com">Help</a></body></html>`,
			m.HTML, "an untracked campaign's HTML is untouched")
	}
}
