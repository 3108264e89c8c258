package app

import (
	"errors"
	"log/slog"
	"time"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/preferences"
	"github.com/tailor-email/tailor/preferences/web"
)

// PreferenceOptions configure the preference center. Zero values mean defaults; empty secrets
// or keys leave the matching routes out.
type PreferenceOptions struct {
	// WebhookSecrets are the active Standard Webhooks secrets (whsec_...); without one there is
	// no POST /v1/webhooks/preferences.
	WebhookSecrets []string
	// TokenKeys verify (and the first signs) the links of the page and one-click routes;
	// without one those routes are left out.
	TokenKeys []preferences.TokenKey
	// TokenTTL is how long a link works. Default preferences.TokenTTLDefault.
	TokenTTL time.Duration
	// PublicURL is where recipients reach the server (the page form's trusted origin).
	PublicURL string
	// CreateCustomers: a webhook naming an unknown customer by id and email creates it.
	CreateCustomers bool
	Logger          *slog.Logger
}

// Preferences returns the preference center over the backends' Postgres: its store and the
// HTTP handlers (webhook, page, one-click) to Register on a mux. Refused input goes to
// dead_letters.
func Preferences(b *backends.Backends, o PreferenceOptions) (*preferences.Store, *web.Handler, error) {
	store, err := preferences.NewStore(preferences.Config{DB: b.Pool, CreateCustomers: o.CreateCustomers})
	if err != nil {
		return nil, nil, err
	}
	cfg := web.Config{Store: store, DeadLetters: deadletter.NewStore(b.Pool), PublicURL: o.PublicURL, Logger: o.Logger}
	if len(o.WebhookSecrets) > 0 {
		if cfg.Verifier, err = web.NewVerifier(o.WebhookSecrets); err != nil {
			return nil, nil, err
		}
	}
	if len(o.TokenKeys) > 0 {
		if cfg.Tokens, err = preferences.NewTokens(preferences.TokensConfig{Keys: o.TokenKeys, TTL: o.TokenTTL}); err != nil {
			return nil, nil, err
		}
	}
	h, err := web.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return store, h, nil
}

// PreferenceLinks returns the render path's link builder (jobs.Config.Links): every rendered
// message gets its own token in its one-click unsubscribe and preference page URLs under
// publicURL. Both empty: nil (messages carry no links). One without the other is an error.
func PreferenceLinks(publicURL string, keys []preferences.TokenKey, ttl time.Duration) (func(campaignID int64, topic, customerID string) (string, string), error) {
	switch {
	case publicURL == "" && len(keys) == 0:
		return nil, nil
	case publicURL == "" || len(keys) == 0:
		return nil, errors.New("preference links need both a public URL and a token key")
	}
	tokens, err := preferences.NewTokens(preferences.TokensConfig{Keys: keys, TTL: ttl})
	if err != nil {
		return nil, err
	}
	links, err := preferences.NewLinks(publicURL, tokens)
	if err != nil {
		return nil, err
	}
	return links.For, nil
}
