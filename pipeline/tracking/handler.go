package tracking

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// RecordTimeoutDefault bounds the outbox insert of one hit; a slower database costs the
// event, never the recipient's redirect or image.
const RecordTimeoutDefault = 2 * time.Second

// Recording is what a Handler needs to record hits (a *Recorder).
type Recording interface {
	Record(ctx context.Context, c Claims, at time.Time) error
}

var _ Recording = (*Recorder)(nil)

// HandlerConfig configures a Handler. Zero values mean defaults.
type HandlerConfig struct {
	// Tokens verify the tokens. Required.
	Tokens *Tokens
	// Recorder records valid hits. Required.
	Recorder Recording
	// RecordTimeout bounds one hit's recording. Default RecordTimeoutDefault (2 s).
	RecordTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock of the events. Default time.Now.
	Now func() time.Time
}

// Handler serves the tracking routes. They take no API key (recipients' mail clients call
// them) and answer without revealing whether a token was valid beyond what they must: the open
// pixel is the same image for every request.
type Handler struct {
	cfg HandlerConfig
}

// NewHandler checks cfg and returns the handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Tokens == nil || cfg.Recorder == nil {
		return nil, errors.New("tracking: HandlerConfig.Tokens and HandlerConfig.Recorder are required")
	}
	cfg.RecordTimeout = cmp.Or(cfg.RecordTimeout, RecordTimeoutDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg}, nil
}

// Register mounts GET /t/o/{token} and GET /t/c/{token} on mux (HEAD is answered alike and
// records nothing).
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+OpenPath+"{token}", h.Open)
	mux.HandleFunc("GET "+ClickPath+"{token}", h.Click)
}

// pixelGIF is a transparent 1x1 GIF89a (43 bytes).
var pixelGIF = []byte{
	'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
	0x21, 0xf9, 4, 1, 0, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b,
}

func noCache(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0, private")
	hd.Set("Pragma", "no-cache")
	hd.Set("Expires", "0")
}

// Open answers GET /t/o/{token} with the 1x1 GIF, whatever the token; only a valid open token
// records an email_open.
func (h *Handler) Open(w http.ResponseWriter, r *http.Request) {
	if c, err := h.cfg.Tokens.Parse(r.PathValue("token")); err == nil && c.Kind == KindOpen && r.Method == http.MethodGet {
		h.record(r.Context(), c)
	}
	noCache(w)
	w.Header().Set("Content-Type", "image/gif")
	w.Header().Set("Content-Length", strconv.Itoa(len(pixelGIF)))
	_, _ = w.Write(pixelGIF)
}

// Click answers GET /t/c/{token}: a 302 to the URL the token signs, recording an email_click
// when the token has not expired (an expired one still redirects). Any other token gets 400
// and no Location: the target never comes from anything but a verified token.
func (h *Handler) Click(w http.ResponseWriter, r *http.Request) {
	c, err := h.cfg.Tokens.Parse(r.PathValue("token"))
	if (err != nil && !errors.Is(err, ErrTokenExpired)) || c.Kind != KindClick {
		noCache(w)
		http.Error(w, "this link is not valid", http.StatusBadRequest)
		return
	}
	if err == nil && r.Method == http.MethodGet {
		h.record(r.Context(), c) // a HEAD (link checkers, prefetchers) is answered, not counted
	}
	noCache(w)
	w.Header().Set("Location", c.URL)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusFound)
}

func (h *Handler) record(ctx context.Context, c Claims) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.RecordTimeout)
	defer cancel()
	err := h.cfg.Recorder.Record(ctx, c, h.cfg.Now())
	switch {
	case err == nil:
		hits.WithLabelValues(c.Kind.String(), "recorded").Inc()
	case errors.Is(err, ErrUnknownMessage):
		hits.WithLabelValues(c.Kind.String(), "unknown_message").Inc()
	default:
		hits.WithLabelValues(c.Kind.String(), "error").Inc()
		h.cfg.Logger.Warn("tracking: hit not recorded", "kind", c.Kind, "campaign", c.CampaignID, "err", err)
	}
}
