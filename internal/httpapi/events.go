package httpapi

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/tailor-email/tailor/pipeline/events"
)

// EventsBodyLimitDefault bounds a POST /v1/events body: a full batch (500 events of up to
// 32 KiB each, events.MaxBatchBytes) fits, so every batch that is valid event by event is
// accepted as a whole.
const EventsBodyLimitDefault = events.MaxBatchBytes

// EventsConfig configures the POST /v1/events handler.
type EventsConfig struct {
	// Ingestor validates, publishes and dead-letters. Required.
	Ingestor *events.Ingestor
	// BodyLimit bounds a request body in bytes. Default EventsBodyLimitDefault.
	BodyLimit int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// EventsResponse is the handler's JSON answer.
type EventsResponse struct {
	Accepted int                   `json:"accepted"`
	Rejected int                   `json:"rejected"`
	Results  []events.IngestResult `json:"results,omitempty"`
	Error    string                `json:"error,omitempty"`
}

// NewEventsHandler returns the handler of POST /v1/events: one event (object) or a batch of
// up to 500 (array or NDJSON). It answers per event, accepted or rejected with the reason: 200
// when all were accepted, 207 when some were rejected, 422 when all were. A body that is not
// JSON gets 400, too large 413; both are dead-lettered. It does not authenticate: wrap it in
// RequireScope(keys, ScopeEvents, h).
func NewEventsHandler(cfg EventsConfig) (http.Handler, error) {
	if cfg.Ingestor == nil || cfg.Ingestor.Stream == nil || cfg.Ingestor.DeadLetters == nil {
		return nil, errors.New("events handler: an Ingestor with Stream and DeadLetters is required")
	}
	cfg.BodyLimit = cmp.Or(cfg.BodyLimit, EventsBodyLimitDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &eventsHandler{cfg: cfg}, nil
}

type eventsHandler struct{ cfg EventsConfig }

func (h *eventsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		WriteJSON(w, http.StatusMethodNotAllowed, EventsResponse{Error: "use POST"})
		return
	}
	ctx := r.Context()
	dls := h.cfg.Ingestor.DeadLetters
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.BodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			reason := fmt.Sprintf("body larger than %d bytes: split the batch", h.cfg.BodyLimit)
			// Keep what was read (bounded by the limit) so nothing vanishes silently.
			if err := dls.Put(ctx, events.SourceAPI, reason, body); err != nil {
				h.fail(w, err)
				return
			}
			WriteJSON(w, http.StatusRequestEntityTooLarge, EventsResponse{Error: reason})
			return
		}
		WriteJSON(w, http.StatusBadRequest, EventsResponse{Error: "read body: " + err.Error()})
		return
	}
	raws, err := events.SplitBatch(body)
	if err != nil {
		if err := dls.Put(ctx, events.SourceAPI, err.Error(), body); err != nil {
			h.fail(w, err)
			return
		}
		WriteJSON(w, http.StatusBadRequest, EventsResponse{Error: err.Error()})
		return
	}
	results, err := h.cfg.Ingestor.Ingest(ctx, events.SourceAPI, raws)
	if err != nil {
		h.fail(w, err)
		return
	}
	resp := EventsResponse{Results: results}
	for _, res := range results {
		if res.Status == events.StatusAccepted {
			resp.Accepted++
		} else {
			resp.Rejected++
		}
	}
	code := http.StatusOK
	switch {
	case resp.Rejected > 0 && resp.Accepted > 0:
		code = http.StatusMultiStatus
	case resp.Rejected > 0:
		code = http.StatusUnprocessableEntity
	}
	WriteJSON(w, code, resp)
}

func (h *eventsHandler) fail(w http.ResponseWriter, err error) {
	h.cfg.Logger.Error("ingest events", "err", err)
	WriteJSON(w, http.StatusServiceUnavailable, EventsResponse{Error: "events could not be recorded, retry later"})
}
