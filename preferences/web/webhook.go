package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/preferences"
)

// HeaderReplayed marks the stored answer given again to a replayed webhook.
const HeaderReplayed = "Idempotent-Replayed"

// webhook serves POST /v1/webhooks/preferences: size limit, signature, then the change set.
// 200 with the receipt once the change is durable (and to a replay of it, with
// Idempotent-Replayed: true); 413, 400, 401, 404, 409 and 422 with {"error": reason} and a dead
// letter (source webhook) for everything refused; 503 when Postgres fails (the sender retries).
func (h *Handler) webhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.Header.Get(HeaderID)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.WebhookBodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.refuse(w, r, id, body, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("body larger than %d bytes: send one customer's changes per webhook", h.cfg.WebhookBodyLimit))
			return
		}
		h.refuse(w, r, id, body, http.StatusBadRequest, "malformed", "read body: "+err.Error())
		return
	}
	if err := h.cfg.Verifier.Verify(body, r.Header); err != nil {
		code, outcome := http.StatusUnauthorized, "bad_signature"
		switch {
		case errors.Is(err, ErrSignatureHeaders):
			code, outcome = http.StatusBadRequest, "unsigned"
		case errors.Is(err, ErrTimestamp):
			outcome = "expired"
		}
		h.refuse(w, r, id, body, code, outcome, "signature: "+err.Error())
		return
	}
	answer, replayed, err := h.cfg.Store.Receive(ctx, preferences.Delivery{ID: id, Body: body})
	var conflict *preferences.ConflictError
	switch {
	case err == nil:
		outcome := "accepted"
		if replayed {
			outcome = "replayed"
			w.Header().Set(HeaderReplayed, "true")
		}
		webhookRequests.WithLabelValues(outcome).Inc()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(answer, '\n'))
	case errors.Is(err, preferences.ErrMalformed):
		h.refuse(w, r, id, body, http.StatusBadRequest, "malformed", err.Error())
	case errors.Is(err, preferences.ErrInvalidChange):
		h.refuse(w, r, id, body, http.StatusUnprocessableEntity, "invalid", err.Error())
	case errors.Is(err, preferences.ErrUnknownCustomer):
		h.refuse(w, r, id, body, http.StatusNotFound, "unknown_customer", err.Error())
	case errors.As(err, &conflict):
		h.refuse(w, r, id, body, http.StatusConflict, "conflict", err.Error())
	default:
		webhookRequests.WithLabelValues("error").Inc()
		h.cfg.Logger.Error("preference webhook", "webhook_id", id, "err", err)
		httpapi.WriteError(w, http.StatusServiceUnavailable, "the change could not be recorded, retry later")
	}
}

// refuse answers code with the reason and keeps the body as a dead letter; if even that fails
// the answer is 503, so the sender retries and nothing is lost silently.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, id string, body []byte, code int, outcome, reason string) {
	webhookRequests.WithLabelValues(outcome).Inc()
	label := id
	if len(label) > 64 {
		label = label[:64] + "…"
	}
	if err := h.cfg.DeadLetters.Put(r.Context(), DeadLetterWebhook, fmt.Sprintf("webhook %q: %s", label, reason), body); err != nil {
		h.cfg.Logger.Error("preference webhook: dead letter", "webhook_id", id, "err", err)
		httpapi.WriteError(w, http.StatusServiceUnavailable, "the webhook could not be recorded, retry later")
		return
	}
	httpapi.WriteError(w, code, reason)
}
