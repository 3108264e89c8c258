package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates"
)

// browser starts headless Chromium (Debian's chromium package; make test installs it as root
// with apt) for the test, or skips it saying why.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium; make test installs it when run as root): " + err.Error())
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless,
		chromedp.WindowSize(900, 1100), chromedp.Flag("lang", "de-DE"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A recipient in a real browser: the preference link of a message the render path produced,
// a topic toggled with the keyboard and another by clicking its label, saved, confirmed; the
// database and, through CDC, the profile reflect the choice.
func TestBrowser_PreferencePageFromARenderedMessage(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := t.Context()
	profiles := s.startCDC(t)

	// Render a campaign through the workers, with the preference links.
	tpl, err := templates.FromFiles(map[string]string{
		"template.yaml": "name: prefs-browser\nversion: 1\n",
		"subject":       "News for {{ customer.email }}",
		"html":          `<p>Hello</p><p><a href="{{ preferences_url }}">Email preferences</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>`,
		"text":          "Preferences: {{ preferences_url }}\nUnsubscribe: {{ unsubscribe_url }}\n",
	})
	require.NoError(t, err)
	workers, err := app.Workers(ctx, s.env.Backends, jobs.Config{Links: s.links.For})
	require.NoError(t, err)
	require.NoError(t, workers.Start(context.Background()))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = workers.Stop(stopCtx)
	})
	rc, err := jobs.NewInsertClient(s.env.Pool)
	require.NoError(t, err)
	camp, err := jobs.CreateCampaign(ctx, s.env.Pool, rc, jobs.NewCampaign{Name: "browser", Template: tpl, Segment: `customer_id == "c-1"`, SendAt: jobs.SendAt{At: time.Now()}})
	require.NoError(t, err)
	done, err := jobs.WaitCampaign(ctx, s.env.Pool, camp.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StatusRendered, done.Status, done.Error)
	msgs, err := jobs.ListMessages(ctx, s.env.Pool, camp.ID, 0, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	m := regexp.MustCompile(`href="(http://127\.0\.0\.1:\d+/preferences/[A-Za-z0-9_-]+)"`).FindStringSubmatch(msgs[0].HTML)
	require.NotNil(t, m, msgs[0].HTML)
	pageURL := m[1]
	var headers string
	require.NoError(t, s.env.Pool.QueryRow(ctx, `SELECT headers::text FROM rendered_messages WHERE id = $1`, msgs[0].ID).Scan(&headers))
	require.Regexp(t, `"List-Unsubscribe": "<http://127\.0\.0\.1:\d+/unsubscribe/[A-Za-z0-9_-]+>"`, headers)
	require.Contains(t, headers, `"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"`)

	bctx := browser(t)
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.ID("topic-news"))))
	title, err := chromedp.Run(bctx, chromedp.Title())
	require.NoError(t, err)
	require.Equal(t, "E-Mail-Einstellungen", title)
	// Keyboard: focus the news box and press space; mouse: click the tips label. Then save.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Focus(chromedp.ID("topic-news")),
		chromedp.KeyEvent(" "),
		chromedp.Click(chromedp.CSS(`label[for="topic-tips"]`)),
	))
	res, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(`form:not(.confirm) button[type="submit"]`)))
	require.NoError(t, err)
	require.EqualValues(t, 200, res.Status)
	notice, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`p.notice[role="status"]`)))
	require.NoError(t, err)
	require.Equal(t, "Ihre Einstellungen wurden gespeichert.", notice)
	for _, id := range []string{"topic-news", "topic-tips"} {
		checked, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("`+id+`").checked`))
		require.NoError(t, err)
		require.False(t, checked, "the page shows the saved state of %s", id)
	}
	require.Equal(t, "unsubscribed", s.status(t, "c-1", "news"))
	require.Equal(t, "unsubscribed", s.status(t, "c-1", "tips"))
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		p, err := profiles.Get(ctx, "c-1")
		if err != nil {
			return false, err.Error()
		}
		return p.Subscriptions["news"].Status == profile.StatusUnsubscribed && p.Subscriptions["tips"].Status == profile.StatusUnsubscribed &&
			p.Subscriptions["news"].Source == "preference_page", fmt.Sprintf("profile subscriptions %+v", p.Subscriptions)
	})
}

// TestBrowser_Screenshot writes the README's picture of the page as a recipient sees it after
// following a message's unsubscribe link (GET: a confirmation, nothing changed yet). It runs
// only with PREFERENCES_SCREENSHOT=path/to.png:
//
//	PREFERENCES_SCREENSHOT=$PWD/docs/preference-page.png go test ./preferences/web -run Screenshot
func TestBrowser_Screenshot(t *testing.T) {
	path := os.Getenv("PREFERENCES_SCREENSHOT")
	if path == "" {
		t.Skip("set PREFERENCES_SCREENSHOT to a .png path to write the README's screenshot")
	}
	s := setup(t)
	_, err := s.env.Pool.Exec(t.Context(), `
		UPDATE topics SET description = 'New arrivals, stories and guides, every Friday' WHERE name = 'news';
		UPDATE topics SET description = 'Short tips to get more out of your purchases' WHERE name = 'tips';
		INSERT INTO topics (name, description) VALUES ('offers', 'Deals and early access to sales');
		INSERT INTO customers (id, email, locale) VALUES ('c-en', 'ada.lovelace@example.com', 'en-GB');
		INSERT INTO subscriptions (customer_id, topic, status) VALUES ('c-en', 'news', 'subscribed'), ('c-en', 'offers', 'subscribed');`)
	require.NoError(t, err)
	unsub, _ := s.links.For(7, "offers", "c-en")
	bctx := browser(t)
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(unsub), chromedp.WaitVisible(chromedp.CSS("form.confirm"))))
	q, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("confirm-q")))
	require.NoError(t, err)
	require.Equal(t, "Unsubscribe from “offers”?", q)
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	require.Equal(t, "subscribed", s.status(t, "c-en", "offers"), "a GET changes nothing")
}
