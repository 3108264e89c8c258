package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

// Sender API limits.
const (
	// ClaimBodyLimit bounds a POST /v1/messages/claim body.
	ClaimBodyLimit = 4 << 10
	// AckBodyLimit bounds a POST /v1/messages/ack body: a full batch of AckBatchMax outcomes
	// with the longest replies and reasons fits.
	AckBodyLimit = 6 << 20
	// AckBatchMax is the most outcomes one ack carries.
	AckBatchMax = delivery.ClaimBatchMax
)

// MessageStore is what the sender API needs of delivery.Store.
type MessageStore interface {
	Claim(ctx context.Context, r delivery.ClaimRequest) ([]delivery.Message, error)
	Ack(ctx context.Context, outcomes []delivery.Outcome) ([]delivery.AckOutcome, error)
	Get(ctx context.Context, id int64) (*delivery.MessageState, error)
}

var _ MessageStore = (*delivery.Store)(nil)

// MessagesConfig configures the sender API.
type MessagesConfig struct {
	// Store claims, acks and looks up messages. Required.
	Store MessageStore
	// MIME builds format=mime claims; nil: format=mime is refused with 400.
	MIME *delivery.MIMEBuilder
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// ClaimBody is a POST /v1/messages/claim request.
type ClaimBody struct {
	// Limit: 1 to 500.
	Limit int `json:"limit"`
	// LeaseSeconds: 1 to 43200; default 300.
	LeaseSeconds int `json:"lease_seconds"`
	// Campaign narrows the claim to one campaign; 0 or absent: any.
	Campaign int64 `json:"campaign"`
	// Format is json (default: subject, html, text, headers) or mime (a complete RFC 5322
	// message in raw).
	Format string `json:"format"`
}

// ClaimedMessage is one message of a claim's answer.
type ClaimedMessage struct {
	delivery.Message
	// Raw is the RFC 5322 message (format=mime; html, text and headers are then left out).
	Raw string `json:"raw,omitempty"`
}

// ClaimResponse answers a claim.
type ClaimResponse struct {
	Messages []ClaimedMessage `json:"messages"`
}

// AckItem is one outcome of a POST /v1/messages/ack request.
type AckItem struct {
	ID         int64  `json:"id"`
	Receipt    string `json:"receipt"`
	Status     string `json:"status"`
	Bounce     string `json:"bounce,omitempty"`
	ProviderID string `json:"provider_id,omitempty"`
	Reply      string `json:"reply,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// RetryAfterSeconds delays a retry (0 to 604800).
	RetryAfterSeconds float64 `json:"retry_after_seconds,omitempty"`
}

// AckBody is a POST /v1/messages/ack request.
type AckBody struct {
	Outcomes []AckItem `json:"outcomes"`
}

// AckResponse answers an ack, one result per outcome in order.
type AckResponse struct {
	Results []delivery.AckOutcome `json:"results"`
}

// RegisterMessages adds the sender API to mux, each route behind RequireScope(kc, ScopeSend):
//
//	POST /v1/messages/claim  {limit, lease_seconds, campaign?, format?}  -> {messages: [...]}
//	POST /v1/messages/ack    {outcomes: [{id, receipt, status, ...}]}    -> {results: [...]}
//	GET  /v1/messages/{id}                                               -> the delivery record
//
// Bad input gets 400 naming the field, a body over its limit 413, an unknown message 404, a
// store failure 503.
func RegisterMessages(mux *http.ServeMux, kc KeyChecker, cfg MessagesConfig) error {
	if cfg.Store == nil {
		return errors.New("messages handler: Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &messagesHandler{cfg: cfg}
	mux.Handle("POST /v1/messages/claim", RequireScope(kc, ScopeSend, http.HandlerFunc(h.claim)))
	mux.Handle("POST /v1/messages/ack", RequireScope(kc, ScopeSend, http.HandlerFunc(h.ack)))
	mux.Handle("GET /v1/messages/{id}", RequireScope(kc, ScopeSend, http.HandlerFunc(h.get)))
	return nil
}

type messagesHandler struct{ cfg MessagesConfig }

// decode reads a JSON body of at most limit bytes into v, answering 400 or 413 itself.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("one JSON object expected, found more")
	}
	if err == nil {
		if _, derr := dec.Token(); derr != io.EOF {
			err = errors.New("one JSON object expected, found more")
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &mbe):
		WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
	case errors.Is(err, io.EOF):
		WriteError(w, http.StatusBadRequest, "empty body: want a JSON object")
	default:
		WriteError(w, http.StatusBadRequest, "body: "+err.Error())
	}
	return false
}

func (h *messagesHandler) claim(w http.ResponseWriter, r *http.Request) {
	var body ClaimBody
	if !decode(w, r, ClaimBodyLimit, &body) {
		return
	}
	format := strings.ToLower(body.Format)
	switch format {
	case "", "json":
	case "mime":
		if h.cfg.MIME == nil {
			WriteError(w, http.StatusBadRequest, "format: mime needs a From address: start tailor serve with --from")
			return
		}
	default:
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("format: %q: want json or mime", body.Format))
		return
	}
	if body.LeaseSeconds == 0 {
		body.LeaseSeconds = int(delivery.LeaseDefault / time.Second)
	}
	req := delivery.ClaimRequest{Limit: body.Limit, Lease: time.Duration(body.LeaseSeconds) * time.Second, CampaignID: body.Campaign}
	if err := req.Validate(); err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	msgs, err := h.cfg.Store.Claim(r.Context(), req)
	if err != nil {
		h.fail(w, "claim", err)
		return
	}
	resp := ClaimResponse{Messages: make([]ClaimedMessage, len(msgs))}
	var failed []delivery.Outcome
	n := 0
	for _, m := range msgs {
		cm := ClaimedMessage{Message: m}
		if format == "mime" {
			raw, err := h.cfg.MIME.Build(m)
			if err != nil {
				// Not sendable as it is: the sender never sees it, the message fails with the reason.
				failed = append(failed, delivery.Outcome{MessageID: m.ID, CampaignID: m.CampaignID, Receipt: m.Receipt,
					Status: delivery.StatusFailed, Reason: truncate(err.Error(), delivery.MaxReplyBytes)})
				continue
			}
			cm.Raw = string(raw)
			cm.HTML, cm.Text, cm.Headers = "", "", nil
		}
		resp.Messages[n] = cm
		n++
	}
	resp.Messages = resp.Messages[:n]
	if len(failed) > 0 {
		if _, err := h.cfg.Store.Ack(r.Context(), failed); err != nil {
			h.cfg.Logger.Error("sender api: record unbuildable messages as failed (they come back after the lease)", "err", err)
		}
	}
	WriteJSON(w, http.StatusOK, resp)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (h *messagesHandler) ack(w http.ResponseWriter, r *http.Request) {
	var body AckBody
	if !decode(w, r, AckBodyLimit, &body) {
		return
	}
	switch {
	case len(body.Outcomes) == 0:
		WriteError(w, http.StatusBadRequest, "outcomes: want at least one outcome")
		return
	case len(body.Outcomes) > AckBatchMax:
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("outcomes: %d: at most %d per ack", len(body.Outcomes), AckBatchMax))
		return
	}
	outcomes := make([]delivery.Outcome, len(body.Outcomes))
	for i, it := range body.Outcomes {
		if it.RetryAfterSeconds < 0 || it.RetryAfterSeconds > delivery.RetryAfterMax.Seconds() {
			WriteError(w, http.StatusBadRequest, fmt.Sprintf("outcomes[%d].retry_after_seconds: %v: want 0 to %v", i, it.RetryAfterSeconds, delivery.RetryAfterMax.Seconds()))
			return
		}
		outcomes[i] = delivery.Outcome{MessageID: it.ID, Receipt: it.Receipt, Status: delivery.Status(it.Status),
			Bounce: delivery.Bounce(it.Bounce), ProviderID: it.ProviderID, Reply: it.Reply, Reason: it.Reason,
			RetryAfter: time.Duration(it.RetryAfterSeconds * float64(time.Second))}
	}
	res, err := h.cfg.Store.Ack(r.Context(), outcomes)
	if errors.Is(err, delivery.ErrInvalidOutcome) {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		h.fail(w, "ack", err)
		return
	}
	WriteJSON(w, http.StatusOK, AckResponse{Results: res})
}

func (h *messagesHandler) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("message id %q: want a positive integer", r.PathValue("id")))
		return
	}
	st, err := h.cfg.Store.Get(r.Context(), id)
	if errors.Is(err, delivery.ErrMessageNotFound) {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("message %d not found", id))
		return
	}
	if err != nil {
		h.fail(w, "get", err)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (h *messagesHandler) fail(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client left
	}
	h.cfg.Logger.Error("sender api: "+what, "err", err)
	WriteError(w, http.StatusServiceUnavailable, what+" failed, retry later")
}
