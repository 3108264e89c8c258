package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/httpserver"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/preferences"
)

// preferenceCenter is the demo's preference center: the production handlers (internal/app, as
// tailor serve mounts them) on a free loopback port, with a token key made for this run, so
// the rendered emails carry working preference and one-click unsubscribe links.
type preferenceCenter struct {
	srv   *httpserver.Server
	URL   string
	Links func(campaignID int64, topic, customerID string) (unsubscribe, preferences string)
}

func startPreferenceCenter(ctx context.Context, b *backends.Backends, logger *slog.Logger) (*preferenceCenter, error) {
	// A previous run's one-click left its customer unsubscribed: start over, so every run
	// renders for everyone.
	if _, err := b.Pool.Exec(ctx, `DELETE FROM suppressions WHERE customer_id LIKE 'demo-%' AND source = 'one_click'`); err != nil {
		return nil, fmt.Errorf("demo: reset suppressions: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	keys := []preferences.TokenKey{{ID: "demo", Secret: secret}}
	_, h, err := app.Preferences(b, app.PreferenceOptions{TokenKeys: keys, Logger: logger})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv, err := httpserver.Start(httpserver.Config{Addr: "127.0.0.1:0", Mux: mux, Logger: logger})
	if err != nil {
		return nil, err
	}
	pc := &preferenceCenter{srv: srv, URL: "http://" + srv.Addr()}
	if pc.Links, err = app.PreferenceLinks(pc.URL, keys, 0); err != nil {
		_ = pc.Stop(context.Background())
		return nil, err
	}
	return pc, nil
}

// Stop shuts the server down.
func (pc *preferenceCenter) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pc.srv.Stop(ctx)
}

var unsubscribeLink = regexp.MustCompile(`https?://\S+` + regexp.QuoteMeta(preferences.UnsubscribePath) + `[A-Za-z0-9_-]+`)

// showOneClick does what a mailbox provider does with a message's List-Unsubscribe link (RFC
// 8058): POST List-Unsubscribe=One-Click to it. It prints one line saying what happened, checked
// against Postgres the way senders check before sending.
func (pc *preferenceCenter) showOneClick(ctx context.Context, b *backends.Backends, m jobs.Message, out io.Writer) error {
	link := unsubscribeLink.FindString(m.Text + " " + m.HTML)
	if link == "" {
		return errors.New("demo: the rendered message has no unsubscribe link (does the template use unsubscribe_url?)")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, link, strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("demo: one-click unsubscribe: %w", err)
	}
	res.Body.Close()
	reasons, err := preferences.Check(ctx, b.Pool, "", []preferences.Recipient{{CustomerID: m.CustomerID, Email: m.Email}})
	if err != nil {
		return err
	}
	state := "still receives email"
	if r, ok := reasons[m.CustomerID]; ok {
		state = "no longer receives marketing email (" + r + ")"
	}
	fmt.Fprintf(out, "demo: one-click unsubscribe (RFC 8058): POST List-Unsubscribe=One-Click to %s… -> %s; %s %s\n",
		link[:min(len(link), len(pc.URL)+24)], res.Status, m.CustomerID, state)
	return nil
}
