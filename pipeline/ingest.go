package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// Ingestion limits and defaults.
const (
	MaxBatchEvents         = 500
	IngestBodyLimitDefault = 8 << 20
)

// Per-event ingestion outcomes.
const (
	StatusAccepted = "accepted"
	StatusRejected = "rejected"
)

// IngestResult is the outcome for one submitted event.
type IngestResult struct {
	Index   int    `json:"index"`
	EventID string `json:"event_id,omitempty"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
}

// Ingestor validates raw events, sends the valid ones to the stream and dead-letters the rest
// with the raw payload and the reason. Nothing is dropped: an event that fails to reach the
// stream after the producer's retries is dead-lettered too (tailor deadletters replay re-sends
// it). Safe for concurrent use.
type Ingestor struct {
	Producer    *Producer
	DeadLetters DeadLetterWriter
	// Decode bounds validation; zero values mean DecodeEvent's defaults.
	Decode DecodeOptions
}

// Ingest handles one batch of raw events from source (SourceAPI, SourceCLI). It returns one
// result per raw event, in order, and an error only when an outcome could not be recorded
// (the dead-letter store or ctx failed): then the caller must not report success.
func (in *Ingestor) Ingest(ctx context.Context, source string, raws [][]byte) ([]IngestResult, error) {
	results := make([]IngestResult, len(raws))
	var events []Event
	var idx []int
	for i, raw := range raws {
		results[i] = IngestResult{Index: i, EventID: peekEventID(raw)}
		ev, err := DecodeEvent(raw, in.Decode)
		if err != nil {
			results[i].Status, results[i].Reason = StatusRejected, err.Error()
			if err := in.DeadLetters.Put(ctx, source, err.Error(), raw); err != nil {
				return results, err
			}
			continue
		}
		results[i].EventID = ev.EventID
		events = append(events, ev)
		idx = append(idx, i)
	}
	if len(events) == 0 {
		return results, nil
	}
	sent, err := in.Producer.Send(ctx, events)
	for j, i := range idx {
		perr := sent[j]
		if perr == nil && err != nil {
			perr = err
		}
		if perr == nil {
			results[i].Status = StatusAccepted
			continue
		}
		results[i].Status, results[i].Reason = StatusRejected, "not stored, retry later: "+perr.Error()
		// The original bytes, so a replay sees exactly what the client sent.
		if dlErr := in.DeadLetters.Put(context.WithoutCancel(ctx), source, results[i].Reason, raws[i]); dlErr != nil {
			return results, dlErr
		}
	}
	n := 0
	for _, r := range results {
		if r.Status == StatusAccepted {
			n++
		}
	}
	eventsAccepted.WithLabelValues(source).Add(float64(n))
	return results, nil
}

// peekEventID extracts event_id from a payload that may be invalid, for the per-event answer.
func peekEventID(raw []byte) string {
	var v struct {
		EventID any `json:"event_id"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	s, _ := v.EventID.(string)
	if len(s) > MaxIDLen {
		return ""
	}
	return strings.TrimSpace(s)
}

// SplitBatch splits a request body into raw events: a JSON object is one event, a JSON array
// is a batch, and several objects one per line (NDJSON) are a batch too. A body that is none
// of these is a *ValidationError.
func SplitBatch(body []byte) ([][]byte, error) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return nil, invalid("", "empty body: send an event object or an array of events")
	}
	var raws [][]byte
	switch t[0] {
	case '{':
		// NDJSON when every non-empty line starts an object (a pretty-printed object has lines
		// that do not); otherwise one event, which DecodeEvent judges as a whole.
		for line := range bytes.Lines(t) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				if line[0] != '{' {
					return [][]byte{t}, nil
				}
				raws = append(raws, line)
			}
		}
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(t, &arr); err != nil {
			return nil, invalid("", "malformed JSON: %s", jsonReason(err))
		}
		for _, r := range arr {
			raws = append(raws, r)
		}
	default:
		return nil, invalid("", "body must be a JSON object (one event), an array or NDJSON (a batch)")
	}
	if len(raws) == 0 {
		return nil, invalid("", "empty batch")
	}
	if len(raws) > MaxBatchEvents {
		return nil, invalid("", "%d events in one batch, the limit is %d", len(raws), MaxBatchEvents)
	}
	return raws, nil
}

// HashAPIKey returns the hex SHA-256 of an API key: what IngestConfig.APIKeyHashes holds, so
// the server never stores the key itself.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// IngestConfig configures the POST /v1/events handler.
type IngestConfig struct {
	Ingestor *Ingestor
	// APIKeyHashes are the accepted keys' HashAPIKey values. Required (at least one).
	APIKeyHashes []string
	// BodyLimit bounds a request body in bytes. Default 8 MiB.
	BodyLimit int64
	Logger    *slog.Logger
}

// IngestResponse is the handler's JSON answer.
type IngestResponse struct {
	Accepted int            `json:"accepted"`
	Rejected int            `json:"rejected"`
	Results  []IngestResult `json:"results,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// NewIngestHandler returns the handler of POST /v1/events: one event (object) or a batch of
// up to 500 (array or NDJSON), authenticated with an API key (Authorization: Bearer KEY, or X-API-Key).
// It answers per event, accepted or rejected with the reason: 200 when all were accepted, 207
// when some were rejected, 422 when all were. A body that is not JSON gets 400, too large 413;
// both are dead-lettered. Mount it at "POST /v1/events".
func NewIngestHandler(cfg IngestConfig) (http.Handler, error) {
	if cfg.Ingestor == nil || cfg.Ingestor.Producer == nil || cfg.Ingestor.DeadLetters == nil {
		return nil, errors.New("ingest handler: Ingestor with Producer and DeadLetters is required")
	}
	if len(cfg.APIKeyHashes) == 0 {
		return nil, errors.New("ingest handler: at least one API key hash is required")
	}
	hashes := make([][]byte, 0, len(cfg.APIKeyHashes))
	for _, h := range cfg.APIKeyHashes {
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("ingest handler: API key hash %q is not a hex SHA-256", h)
		}
		hashes = append(hashes, b)
	}
	cfg.BodyLimit = cmp.Or(cfg.BodyLimit, IngestBodyLimitDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &ingestHandler{cfg: cfg, hashes: hashes}, nil
}

type ingestHandler struct {
	cfg    IngestConfig
	hashes [][]byte
}

func (h *ingestHandler) authorized(r *http.Request) bool {
	key := r.Header.Get("X-API-Key")
	if auth := r.Header.Get("Authorization"); key == "" && len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		key = strings.TrimSpace(auth[7:])
	}
	if key == "" {
		return false
	}
	sum := sha256.Sum256([]byte(key))
	ok := 0
	for _, hh := range h.hashes {
		ok |= subtle.ConstantTimeCompare(sum[:], hh)
	}
	return ok == 1
}

func (h *ingestHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, IngestResponse{Error: "use POST"})
		return
	}
	if !h.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, IngestResponse{Error: "missing or unknown API key (Authorization: Bearer KEY)"})
		return
	}
	ctx := r.Context()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.BodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			reason := fmt.Sprintf("body larger than %d bytes: split the batch", h.cfg.BodyLimit)
			// Keep what was read (bounded by the limit) so nothing vanishes silently.
			if err := h.cfg.Ingestor.DeadLetters.Put(ctx, SourceAPI, reason, body); err != nil {
				h.fail(w, err)
				return
			}
			writeJSON(w, http.StatusRequestEntityTooLarge, IngestResponse{Error: reason})
			return
		}
		writeJSON(w, http.StatusBadRequest, IngestResponse{Error: "read body: " + err.Error()})
		return
	}
	raws, err := SplitBatch(body)
	if err != nil {
		if err := h.cfg.Ingestor.DeadLetters.Put(ctx, SourceAPI, err.Error(), body); err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusBadRequest, IngestResponse{Error: err.Error()})
		return
	}
	results, err := h.cfg.Ingestor.Ingest(ctx, SourceAPI, raws)
	if err != nil {
		h.fail(w, err)
		return
	}
	resp := IngestResponse{Results: results}
	for _, res := range results {
		if res.Status == StatusAccepted {
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
	writeJSON(w, code, resp)
}

func (h *ingestHandler) fail(w http.ResponseWriter, err error) {
	h.cfg.Logger.Error("ingest events", "err", err)
	writeJSON(w, http.StatusServiceUnavailable, IngestResponse{Error: "events could not be recorded, retry later"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
