package web

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailor-email/tailor/preferences"
)

// Routes, as Register mounts them.
const (
	RouteWebhook       = "/v1/webhooks/preferences"
	RoutePage          = preferences.PagePath + "{token}"
	RouteUnsubscribe   = preferences.UnsubscribePath + "{token}"
	DeadLetterWebhook  = "webhook"   // dead_letters.source of refused webhooks
	DeadLetterOneClick = "one_click" // dead_letters.source of refused one-click POSTs
)

// Bounds of the inputs (bytes).
const (
	FormBodyLimit     = 16 << 10
	OneClickBodyLimit = 1 << 10
)

// DeadLetterer keeps refused input with the reason; *deadletter.Store implements it.
type DeadLetterer interface {
	Put(ctx context.Context, source, reason string, payload []byte) error
}

// Config configures the handlers. Zero values mean defaults.
type Config struct {
	// Store is the preference center. Required.
	Store *preferences.Store
	// Tokens verifies the links of the page and one-click routes; nil leaves those routes out.
	Tokens *preferences.Tokens
	// Verifier checks webhook signatures; nil leaves the webhook route out.
	Verifier *Verifier
	// DeadLetters keeps refused webhooks and one-click POSTs. Required.
	DeadLetters DeadLetterer
	// PublicURL, when set, is trusted as the page form's origin (behind a proxy that changes
	// Host); cross-origin form posts from anywhere else are refused.
	PublicURL string
	// WebhookBodyLimit bounds a webhook body. Default preferences.MaxChangeSetBytes.
	WebhookBodyLimit int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Handler serves the preference center over HTTP: POST /v1/webhooks/preferences (Standard
// Webhooks), GET and POST /preferences/{token} (the hosted page), and /unsubscribe/{token}
// (GET shows the page, POST is the RFC 8058 one-click unsubscribe). It maps the preferences
// package's errors to status codes; it holds no business rules.
type Handler struct {
	cfg    Config
	origin *http.CrossOriginProtection
}

// New checks cfg and returns the handlers.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.DeadLetters == nil {
		return nil, errors.New("preferences web: Config.Store and Config.DeadLetters are required")
	}
	cfg.WebhookBodyLimit = cmp.Or(cfg.WebhookBodyLimit, preferences.MaxChangeSetBytes)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, origin: http.NewCrossOriginProtection()}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, errors.New("preferences web: Config.PublicURL is not an absolute URL")
		}
		if err := h.origin.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			return nil, err
		}
	}
	h.origin.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.failure(w, r, errCrossOrigin)
	}))
	return h, nil
}

// Register mounts the configured routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	if h.cfg.Verifier != nil {
		mux.HandleFunc("POST "+RouteWebhook, h.webhook)
	}
	if h.cfg.Tokens != nil {
		mux.HandleFunc("GET "+RoutePage, h.showPage)
		mux.Handle("POST "+RoutePage, h.origin.Handler(http.HandlerFunc(h.savePage)))
		mux.HandleFunc("GET "+RouteUnsubscribe, h.showUnsubscribe)
		mux.HandleFunc("POST "+RouteUnsubscribe, h.oneClick)
	}
}

var (
	webhookRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_preference_webhooks_total", Help: "Preference webhooks by outcome (accepted, replayed, refused reasons, error).",
	}, []string{"outcome"})
	unsubscribes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_preference_unsubscribes_total", Help: "Unsubscribes through links by path (one_click, page) and scope (topic, all); repeats included.",
	}, []string{"path", "scope"})
	pageSaves = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_preference_page_saves_total", Help: "Preference page forms saved.",
	})
)

// MetricsCollectors are the handlers' counters (internal/app registers them).
func MetricsCollectors() []prometheus.Collector {
	return []prometheus.Collector{webhookRequests, unsubscribes, pageSaves}
}
