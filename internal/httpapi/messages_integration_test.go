package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/apikeys"
	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/delivery"
)

type senderAPI struct {
	srv   *httptest.Server
	env   *testenv.Env
	ahead *atomic.Int64
	camp  int64
	ids   []int64
}

// newSenderAPI serves the sender API over a fresh database with n rendered messages of a
// running campaign, behind the keys in Postgres; mime says whether format=mime is configured.
func newSenderAPI(t *testing.T, n int, mime bool) *senderAPI {
	t.Helper()
	env := testenv.New(t)
	ctx := t.Context()
	a := &senderAPI{env: env, ahead: &atomic.Int64{}}
	now := func() time.Time { return time.Now().Add(time.Duration(a.ahead.Load())) }
	keys, err := apikeys.NewChecker(apikeys.CheckerConfig{DB: env.Pool, Now: now})
	require.NoError(t, err)
	store, err := delivery.NewStore(delivery.StoreConfig{DB: env.Pool})
	require.NoError(t, err)
	cfg := httpapi.MessagesConfig{Store: store}
	if mime {
		cfg.MIME, err = delivery.NewMIMEBuilder(delivery.MIMEConfig{From: "Shop <news@shop.example>"})
		require.NoError(t, err)
	}
	mux := http.NewServeMux()
	require.NoError(t, httpapi.RegisterMessages(mux, keys, cfg))
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)

	require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment, status, started_at)
		VALUES ('c', 't', 1, '{}', 'true', 'running', now()) RETURNING id`).Scan(&a.camp))
	rows, err := env.Pool.Query(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email, subject, html, text_body, headers, not_before)
		SELECT $1, 'c' || g, 'c' || g || '@example.com', 'Grüße ' || g, '<p>Hi ' || g || '</p>', 'Hi ' || g,
		       '{"List-Unsubscribe": "<https://t.example/u/x>"}', now() - interval '1 minute'
		FROM generate_series(1, $2) g ORDER BY g RETURNING id`, a.camp, n)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		a.ids = append(a.ids, id)
	}
	require.NoError(t, rows.Err())
	return a
}

// do sends a request with key and returns the status and the decoded JSON answer.
func (a *senderAPI) do(t *testing.T, method, path, key string, body []byte, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.srv.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "%s", raw)
	}
	return resp.StatusCode
}

type apiError struct {
	Error string `json:"error"`
}

func TestMessagesAPI_RequiresAKeyWithTheSendScope(t *testing.T) {
	t.Parallel()
	a := newSenderAPI(t, 3, false)
	ctx := t.Context()
	keys := apikeys.NewStore(a.env.Pool)
	send, err := keys.Create(ctx, "relay", []string{"send"})
	require.NoError(t, err)
	ingest, err := keys.Create(ctx, "ingest", []string{"events"})
	require.NoError(t, err)
	claim := []byte(`{"limit": 10, "lease_seconds": 60}`)
	ack := []byte(`{"outcomes": [{"id": 1, "receipt": "r", "status": "sent"}]}`)
	get := fmt.Sprintf("/v1/messages/%d", a.ids[0])

	for _, r := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/v1/messages/claim", claim}, {"POST", "/v1/messages/ack", ack}, {"GET", get, nil},
	} {
		var e apiError
		require.Equal(t, http.StatusForbidden, a.do(t, r.method, r.path, ingest.Secret, r.body, &e), r.path)
		require.Equal(t, `this API key lacks the "send" scope`, e.Error)
		require.Equal(t, http.StatusUnauthorized, a.do(t, r.method, r.path, "", r.body, &e), r.path)
		require.Equal(t, http.StatusUnauthorized, a.do(t, r.method, r.path, "tlr_nope", r.body, &e), r.path)
	}
	var res httpapi.ClaimResponse
	require.Equal(t, http.StatusOK, a.do(t, "POST", "/v1/messages/claim", send.Secret, []byte(`{"limit": 1}`), &res))
	require.Len(t, res.Messages, 1, "nothing was handed out to refused keys")

	_, err = keys.Revoke(ctx, "relay")
	require.NoError(t, err)
	a.ahead.Add(int64(apikeys.MaxAgeDefault))
	for _, r := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/v1/messages/claim", claim}, {"POST", "/v1/messages/ack", ack}, {"GET", get, nil},
	} {
		var e apiError
		require.Equal(t, http.StatusUnauthorized, a.do(t, r.method, r.path, send.Secret, r.body, &e), "revoked: %s", r.path)
		require.Contains(t, e.Error, "revoked")
	}
	c, err := delivery.CampaignCounts(ctx, a.env.Pool, a.camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Ready: 2, Leased: 1}, c, "only the send key's claim took a message")
}

func TestMessagesAPI_ClaimAckAndGet(t *testing.T) {
	t.Parallel()
	a := newSenderAPI(t, 5, true)
	key, err := apikeys.NewStore(a.env.Pool).Create(t.Context(), "relay", []string{"send"})
	require.NoError(t, err)
	k := key.Secret

	var res httpapi.ClaimResponse
	require.Equal(t, http.StatusOK, a.do(t, "POST", "/v1/messages/claim", k, []byte(`{"limit": 2, "lease_seconds": 60, "campaign": `+fmt.Sprint(a.camp)+`}`), &res))
	require.Len(t, res.Messages, 2)
	for _, m := range res.Messages {
		require.NotEmpty(t, m.Receipt)
		require.Equal(t, a.camp, m.CampaignID)
		require.Contains(t, m.HTML, "<p>Hi ")
		require.Empty(t, m.Raw)
		require.WithinDuration(t, time.Now().Add(time.Minute), m.LeaseExpires, 10*time.Second)
	}
	var mres httpapi.ClaimResponse
	require.Equal(t, http.StatusOK, a.do(t, "POST", "/v1/messages/claim", k, []byte(`{"limit": 2, "format": "mime"}`), &mres))
	require.Len(t, mres.Messages, 2)
	for _, m := range mres.Messages {
		msg, err := mail.ReadMessage(strings.NewReader(m.Raw))
		require.NoError(t, err, "format mime is a complete RFC 5322 message")
		to, err := msg.Header.AddressList("To")
		require.NoError(t, err)
		require.Equal(t, m.Email, to[0].Address)
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(subject, "Grüße "), subject)
		require.Empty(t, m.HTML, "the body is in raw")
	}

	// One outcome per message; a stale receipt is refused for its message alone.
	m0, m1 := res.Messages[0], res.Messages[1]
	body := fmt.Sprintf(`{"outcomes": [
		{"id": %d, "receipt": %q, "status": "sent", "provider_id": "p-1", "reply": "250 OK"},
		{"id": %d, "receipt": "not-the-receipt", "status": "sent"},
		{"id": %d, "receipt": %q, "status": "retry", "retry_after_seconds": 30}]}`,
		m0.ID, m0.Receipt, mres.Messages[0].ID, m1.ID, m1.Receipt)
	var ack httpapi.AckResponse
	require.Equal(t, http.StatusOK, a.do(t, "POST", "/v1/messages/ack", k, []byte(body), &ack))
	require.Equal(t, []delivery.AckResult{delivery.AckAccepted, delivery.AckStale, delivery.AckAccepted},
		[]delivery.AckResult{ack.Results[0].Result, ack.Results[1].Result, ack.Results[2].Result})

	var st delivery.MessageState
	require.Equal(t, http.StatusOK, a.do(t, "GET", fmt.Sprintf("/v1/messages/%d", m0.ID), k, nil, &st))
	require.Equal(t, delivery.StateSent, st.State)
	require.Equal(t, "p-1", st.ProviderID)
	require.Len(t, st.BodySHA256, 64)
	require.Equal(t, http.StatusOK, a.do(t, "GET", fmt.Sprintf("/v1/messages/%d", m1.ID), k, nil, &st))
	require.Equal(t, delivery.StateRetrying, st.State)
	require.WithinDuration(t, time.Now().Add(30*time.Second), *st.RetryAt, 10*time.Second)
	var e apiError
	require.Equal(t, http.StatusNotFound, a.do(t, "GET", "/v1/messages/999999999", k, nil, &e))
	require.Equal(t, http.StatusBadRequest, a.do(t, "GET", "/v1/messages/abc", k, nil, &e))
	require.Contains(t, e.Error, "positive integer")
}

func TestMessagesAPI_RefusesBadInputWithTheReason(t *testing.T) {
	t.Parallel()
	a := newSenderAPI(t, 1, false)
	key, err := apikeys.NewStore(a.env.Pool).Create(t.Context(), "relay", []string{"send"})
	require.NoError(t, err)
	for _, tc := range []struct {
		path, body, want string
		code             int
	}{
		{"/v1/messages/claim", ``, "empty body", 400},
		{"/v1/messages/claim", `{"limit": 0}`, "limit: 0: want 1 to 500", 400},
		{"/v1/messages/claim", `{"limit": 501}`, "limit: 501", 400},
		{"/v1/messages/claim", `{"limit": 1, "lease_seconds": -5}`, "lease_seconds", 400},
		{"/v1/messages/claim", `{"limit": 1, "lease_seconds": 999999}`, "lease_seconds", 400},
		{"/v1/messages/claim", `{"limit": 1, "campaign": -1}`, "campaign", 400},
		{"/v1/messages/claim", `{"limit": 1, "format": "xml"}`, `format: "xml": want json or mime`, 400},
		{"/v1/messages/claim", `{"limit": 1, "format": "mime"}`, "--from", 400},
		{"/v1/messages/claim", `{"limit": 1, "colour": "red"}`, `unknown field "colour"`, 400},
		{"/v1/messages/claim", `{"limit": 1} {"limit": 2}`, "one JSON object", 400},
		{"/v1/messages/claim", `[1,2]`, "body:", 400},
		{"/v1/messages/claim", `{"limit": 1, "format": "` + strings.Repeat("x", httpapi.ClaimBodyLimit) + `"}`, "larger than", 413},
		{"/v1/messages/ack", `{"outcomes": []}`, "at least one", 400},
		{"/v1/messages/ack", `{"outcomes": [{"id": 1, "receipt": "r", "status": "lost"}]}`, `outcomes[0].status: "lost"`, 400},
		{"/v1/messages/ack", `{"outcomes": [{"id": 1, "receipt": "r", "status": "bounced"}]}`, "outcomes[0].bounce", 400},
		{"/v1/messages/ack", `{"outcomes": [{"id": 1, "status": "sent"}]}`, "outcomes[0].receipt", 400},
		{"/v1/messages/ack", `{"outcomes": [{"id": 1, "receipt": "r", "status": "retry", "retry_after_seconds": -1}]}`, "retry_after_seconds", 400},
		{"/v1/messages/ack", `{"outcomes": [{"id": 1, "receipt": "r", "status": "sent"}, {"id": 1, "receipt": "r", "status": "sent"}]}`, "appears twice", 400},
		{"/v1/messages/ack", `{"outcomes": [` + strings.Repeat(`{"id": 1, "receipt": "r", "status": "sent"},`, 501) + `{"id": 2, "receipt": "r", "status": "sent"}]}`, "at most 500", 400},
	} {
		var e apiError
		require.Equal(t, tc.code, a.do(t, "POST", tc.path, key.Secret, []byte(tc.body), &e), "%s %.80s: %s", tc.path, tc.body, e.Error)
		require.Contains(t, e.Error, tc.want, "%s %.80s", tc.path, tc.body)
	}
	c, err := delivery.CampaignCounts(t.Context(), a.env.Pool, a.camp)
	require.NoError(t, err)
	require.Equal(t, delivery.Counts{Ready: 1}, c, "no bad request claimed or acked anything")
}
