package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/preferences"
	"github.com/tailor-email/tailor/preferences/web"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	secret1 = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	secret2 = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 24))
	other   = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))
)

type server struct {
	env    *testenv.Env
	store  *preferences.Store
	tokens *preferences.Tokens
	links  *preferences.Links
	dls    *deadletter.Store
	srv    *httptest.Server
	now    *time.Time // the tokens' clock
}

// setup serves the preference center over a fresh database with topics news (opt-in, with
// a description that tries to inject markup) and tips (opt-out), and customers c-1 (de-DE)
// and c-2 (fr), both subscribed to news.
func setup(t testing.TB) *server {
	t.Helper()
	env := testenv.New(t)
	store, err := preferences.NewStore(preferences.Config{DB: env.Pool})
	require.NoError(t, err)
	now := time.Now()
	tokens, err := preferences.NewTokens(preferences.TokensConfig{Keys: []preferences.TokenKey{{ID: "k1", Secret: bytes.Repeat([]byte{9}, 32)}},
		Now: func() time.Time { return now }})
	require.NoError(t, err)
	verifier, err := web.NewVerifier([]string{secret1, secret2})
	require.NoError(t, err)
	dls := deadletter.NewStore(env.Pool)
	h, err := web.New(web.Config{Store: store, Tokens: tokens, Verifier: verifier, DeadLetters: dls})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux) // loopback only
	t.Cleanup(srv.Close)
	links, err := preferences.NewLinks(srv.URL, tokens)
	require.NoError(t, err)
	_, err = env.Pool.Exec(context.Background(), `
		INSERT INTO topics (name, description, default_status) VALUES ('news', 'Weekly <script>alert(1)</script> news', 'unsubscribed'), ('tips', 'Tips', 'subscribed');
		INSERT INTO customers (id, email, locale) VALUES ('c-1', 'ada@example.com', 'de-DE'), ('c-2', 'chloe@example.com', 'fr');
		INSERT INTO subscriptions (customer_id, topic, status) VALUES ('c-1', 'news', 'subscribed'), ('c-2', 'news', 'subscribed');`)
	require.NoError(t, err)
	return &server{env: env, store: store, tokens: tokens, links: links, dls: dls, srv: srv, now: &now}
}

func (s *server) status(t testing.TB, customer, topic string) string {
	t.Helper()
	var st string
	err := s.env.Pool.QueryRow(context.Background(), `SELECT status FROM subscriptions WHERE customer_id = $1 AND topic = $2`, customer, topic).Scan(&st)
	if err != nil {
		return "none"
	}
	return st
}

func (s *server) deadLetters(t testing.TB, source string) []deadletter.Letter {
	t.Helper()
	l, err := s.dls.List(context.Background(), deadletter.Filter{Source: source, Limit: 1000})
	require.NoError(t, err)
	return l
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{res.StatusCode, res.Header, string(b)}
}

func (s *server) webhook(t testing.TB, body []byte, h http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+web.RouteWebhook, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func signed(t testing.TB, secret, id string, at time.Time, body []byte) http.Header {
	t.Helper()
	h, err := web.Sign(secret, id, at, body)
	require.NoError(t, err)
	return h
}

func TestWebhook_VerifiesIdempotentlyAppliesAndDeadLettersEveryRefusal(t *testing.T) {
	t.Parallel()
	s := setup(t)
	now := time.Now()
	change := func(customer, topic, st string) []byte {
		return []byte(`{"customer_id":"` + customer + `","occurred_at":"` + now.UTC().Format(time.RFC3339Nano) + `","topics":{"` + topic + `":"` + st + `"}}`)
	}
	valid := change("c-1", "news", "unsubscribed")
	var firstAnswer string
	for _, tc := range []struct {
		name    string
		body    []byte
		headers http.Header
		code    int
		reason  string // in the answer and the dead letter; "" for 200
		check   func(t *testing.T, r response)
	}{
		{name: "valid", body: valid, headers: signed(t, secret1, "msg_1", now, valid), code: 200, check: func(t *testing.T, r response) {
			require.Contains(t, r.body, `"applied":{"topics":["news"]`)
			require.Equal(t, "unsubscribed", s.status(t, "c-1", "news"))
			firstAnswer = r.body
		}},
		{name: "replayed", body: valid, headers: signed(t, secret1, "msg_1", now.Add(time.Minute), valid), code: 200, check: func(t *testing.T, r response) {
			require.Equal(t, firstAnswer, r.body, "the same answer")
			require.Equal(t, "true", r.header.Get(web.HeaderReplayed))
		}},
		{name: "same id other body", body: change("c-1", "news", "subscribed"), headers: signed(t, secret1, "msg_1", now, change("c-1", "news", "subscribed")),
			code: 409, reason: "was used for another body"},
		{name: "rotated secret", body: change("c-2", "tips", "unsubscribed"), headers: signed(t, secret2, "msg_2", now, change("c-2", "tips", "unsubscribed")), code: 200,
			check: func(t *testing.T, r response) { require.Equal(t, "unsubscribed", s.status(t, "c-2", "tips")) }},
		{name: "forged", body: change("c-2", "news", "unsubscribed"), headers: signed(t, secret1, "msg_3", now, change("c-2", "news", "subscribed")),
			code: 401, reason: "no webhook-signature matches"},
		{name: "wrong secret", body: change("c-2", "news", "unsubscribed"), headers: signed(t, other, "msg_4", now, change("c-2", "news", "unsubscribed")),
			code: 401, reason: "no webhook-signature matches"},
		{name: "expired timestamp", body: change("c-2", "news", "unsubscribed"), headers: signed(t, secret1, "msg_5", now.Add(-6*time.Minute), change("c-2", "news", "unsubscribed")),
			code: 401, reason: "more than 5 minutes"},
		{name: "future timestamp", body: change("c-2", "news", "unsubscribed"), headers: signed(t, secret1, "msg_6", now.Add(6*time.Minute), change("c-2", "news", "unsubscribed")),
			code: 401, reason: "more than 5 minutes"},
		{name: "unsigned", body: change("c-2", "news", "unsubscribed"), headers: http.Header{}, code: 400, reason: "missing or malformed"},
		{name: "bad timestamp header", body: valid, headers: http.Header{"Webhook-Id": {"x"}, "Webhook-Timestamp": {"yesterday"}, "Webhook-Signature": {"v1,AAAA"}}, code: 400, reason: "missing or malformed"},
		{name: "oversized", body: bytes.Repeat([]byte(" "), preferences.MaxChangeSetBytes+1), headers: http.Header{}, code: 413, reason: "body larger than 65536 bytes"},
		{name: "malformed", body: []byte(`{"customer_id":`), headers: signed(t, secret1, "msg_7", now, []byte(`{"customer_id":`)), code: 400, reason: "malformed change set"},
		{name: "schema", body: change("c-2", "news", "maybe"), headers: signed(t, secret1, "msg_8", now, change("c-2", "news", "maybe")), code: 422, reason: "/topics/news"},
		{name: "unknown topic", body: change("c-2", "nope", "subscribed"), headers: signed(t, secret1, "msg_9", now, change("c-2", "nope", "subscribed")), code: 422, reason: `unknown topic "nope"`},
		{name: "unknown customer", body: change("c-404", "news", "subscribed"), headers: signed(t, secret1, "msg_10", now, change("c-404", "news", "subscribed")),
			code: 404, reason: `no customer has id "c-404"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.deadLetters(t, web.DeadLetterWebhook))
			r := s.webhook(t, tc.body, tc.headers)
			require.Equal(t, tc.code, r.code, r.body)
			letters := s.deadLetters(t, web.DeadLetterWebhook)
			if tc.reason == "" {
				require.Len(t, letters, before, "accepted webhooks are no dead letters")
			} else {
				var answer struct{ Error string }
				require.NoError(t, json.Unmarshal([]byte(r.body), &answer))
				require.Contains(t, answer.Error, tc.reason)
				require.Len(t, letters, before+1, "every refusal is a dead letter")
				require.Contains(t, letters[0].Reason, tc.reason)
				require.Equal(t, min(len(tc.body), preferences.MaxChangeSetBytes), len(letters[0].Payload), "with the raw body (up to the limit)")
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	require.Equal(t, "subscribed", s.status(t, "c-2", "news"), "no refused change took effect")
}

func (s *server) tokenFor(t testing.TB, customer, topic string) string {
	t.Helper()
	unsub, _ := s.links.For(5, topic, customer)
	return strings.TrimPrefix(unsub, s.srv.URL+preferences.UnsubscribePath)
}

func (s *server) oneClick(t testing.TB, token, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+preferences.UnsubscribePath+token, bytes.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return do(t, req)
}

func multipartBody(t testing.TB, fields ...string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		require.NoError(t, mw.WriteField(fields[i], fields[i+1]))
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), buf.Bytes()
}

func TestOneClick_RFC8058BodyUnsubscribesAndNothingElseDoes(t *testing.T) {
	t.Parallel()
	s := setup(t)
	form := "application/x-www-form-urlencoded"
	tok := s.tokenFor(t, "c-1", "news")

	// A GET (a mail scanner following the link) shows the page and changes nothing.
	r := do(t, must(http.NewRequest(http.MethodGet, s.srv.URL+preferences.UnsubscribePath+tok, nil)))
	require.Equal(t, 200, r.code)
	require.Contains(t, r.body, "Von „news“ abmelden?", "the confirmation, in the customer's language")
	require.Equal(t, "subscribed", s.status(t, "c-1", "news"))

	// Wrong bodies and methods: refused, nothing changes.
	for _, bad := range []struct {
		ct   string
		body string
	}{
		{form, ""}, {form, "List-Unsubscribe=Yes"}, {form, "List-Unsubscribe=One-Click&also=1"}, {form, "list-unsubscribe=one-click"},
		{"application/json", `{"List-Unsubscribe":"One-Click"}`}, {form, strings.Repeat("x", 2000)},
	} {
		r := s.oneClick(t, tok, bad.ct, []byte(bad.body))
		require.Equal(t, 400, r.code, "%q", bad.body)
	}
	ct, body := multipartBody(t, "List-Unsubscribe", "One-Click", "x", "y")
	require.Equal(t, 400, s.oneClick(t, tok, ct, body).code)
	require.Len(t, s.deadLetters(t, web.DeadLetterOneClick), 7, "every refused body is a dead letter")
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r := do(t, must(http.NewRequest(m, s.srv.URL+preferences.UnsubscribePath+tok, strings.NewReader("List-Unsubscribe=One-Click"))))
		require.Equal(t, http.StatusMethodNotAllowed, r.code, m)
	}
	require.Equal(t, "subscribed", s.status(t, "c-1", "news"))

	// The RFC's exact body: unsubscribed from the token's topic, with no cookie, idempotently.
	for range 2 {
		r := s.oneClick(t, tok, form, []byte("List-Unsubscribe=One-Click"))
		require.Equal(t, 200, r.code, r.body)
		require.Empty(t, r.header.Values("Set-Cookie"))
		require.Equal(t, "unsubscribed", s.status(t, "c-1", "news"))
	}
	var n int
	require.NoError(t, s.env.Pool.QueryRow(t.Context(), `SELECT count(*) FROM suppressions`).Scan(&n))
	require.Zero(t, n, "a topic's link unsubscribes from that topic only")

	// Multipart (what RFC 8058 recommends senders use), for a token without a topic: global.
	ct, body = multipartBody(t, "List-Unsubscribe", "One-Click")
	r = s.oneClick(t, s.tokenFor(t, "c-2", ""), ct, body)
	require.Equal(t, 200, r.code, r.body)
	require.NoError(t, s.env.Pool.QueryRow(t.Context(), `SELECT count(*) FROM suppressions WHERE email = 'chloe@example.com' AND reason = 'unsubscribed' AND source = 'one_click'`).Scan(&n))
	require.Equal(t, 1, n)

	// Tampered and expired links.
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[5] ^= 1
	require.Equal(t, 400, s.oneClick(t, base64.RawURLEncoding.EncodeToString(raw), form, []byte("List-Unsubscribe=One-Click")).code)
	*s.now = s.now.Add(preferences.TokenTTLDefault + time.Hour)
	require.Equal(t, http.StatusGone, s.oneClick(t, tok, form, []byte("List-Unsubscribe=One-Click")).code)
}

func must(r *http.Request, err error) *http.Request {
	if err != nil {
		panic(err)
	}
	return r
}

func TestPage_ShowsLocalisedEscapedStateAndNoDataForBadLinks(t *testing.T) {
	t.Parallel()
	s := setup(t)
	_, pageURL := s.links.For(5, "news", "c-1")
	r := do(t, must(http.NewRequest(http.MethodGet, pageURL, nil)))
	require.Equal(t, 200, r.code)
	require.Contains(t, r.body, `<html lang="de">`)
	require.Contains(t, r.body, "E-Mail-Einstellungen")
	require.Contains(t, r.body, "a***@example.com")
	require.NotContains(t, r.body, "ada@example.com", "the address is masked")
	require.Contains(t, r.body, `id="topic-news" name="topic" value="news" checked`)
	require.Contains(t, r.body, `id="topic-tips" name="topic" value="tips" checked`, "an opt-out topic without a row is ticked")
	require.Contains(t, r.body, "Weekly &lt;script&gt;alert(1)&lt;/script&gt; news")
	require.NotContains(t, r.body, "<script>")
	require.Contains(t, r.body, `<label for="unsubscribe-all">`)
	require.Contains(t, r.header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Equal(t, "same-origin", r.header.Get("Referrer-Policy"))

	_, frURL := s.links.For(5, "", "c-2")
	require.Contains(t, do(t, must(http.NewRequest(http.MethodGet, frURL, nil))).body, "Préférences e-mail")

	tok := strings.TrimPrefix(pageURL, s.srv.URL+preferences.PagePath)
	for _, bad := range []struct {
		token string
		code  int
		text  string
	}{
		{tok[:len(tok)-2] + "AA", 400, "This link is not valid"},
		{"not-a-token", 400, "This link is not valid"},
		{s.tokenFor(t, "c-gone", ""), 404, "No preferences found"},
	} {
		req := must(http.NewRequest(http.MethodGet, s.srv.URL+preferences.PagePath+bad.token, nil))
		req.Header.Set("Accept-Language", "en-GB,en;q=0.8")
		r := do(t, req)
		require.Equal(t, bad.code, r.code, bad.token)
		require.Contains(t, r.body, bad.text)
		require.NotContains(t, r.body, "news", "no data on an error page")
		require.NotContains(t, r.body, "example.com")
	}
	*s.now = s.now.Add(preferences.TokenTTLDefault)
	req := must(http.NewRequest(http.MethodGet, pageURL, nil))
	req.Header.Set("Accept-Language", "fr")
	r = do(t, req)
	require.Equal(t, http.StatusGone, r.code)
	require.Contains(t, r.body, "Ce lien a expiré")
	require.NotContains(t, r.body, "news")
}

func TestPage_PostNeedsTheFormKeyAndTheSameOrigin(t *testing.T) {
	t.Parallel()
	s := setup(t)
	_, pageURL := s.links.For(5, "news", "c-1")
	tok := strings.TrimPrefix(pageURL, s.srv.URL+preferences.PagePath)
	post := func(form url.Values, header ...string) response {
		req := must(http.NewRequest(http.MethodPost, pageURL, strings.NewReader(form.Encode())))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return do(t, req)
	}
	save := url.Values{"action": {"save"}, "topic": {"tips"}, "csrf": {s.tokens.FormKey(tok)}}

	r := post(url.Values{"action": {"save"}, "topic": {"tips"}})
	require.Equal(t, 403, r.code, "no form key")
	r = post(url.Values{"action": {"save"}, "topic": {"tips"}, "csrf": {s.tokens.FormKey(s.tokenFor(t, "c-2", ""))}})
	require.Equal(t, 403, r.code, "another link's form key")
	r = post(save, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, 403, r.code, "a cross-site form post")
	r = post(save, "Origin", "https://evil.example")
	require.Equal(t, 403, r.code, "another origin")
	require.Equal(t, "subscribed", s.status(t, "c-1", "news"), "nothing refused took effect")

	r = post(save, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, 200, r.code, r.body)
	require.Contains(t, r.body, "Ihre Einstellungen wurden gespeichert.")
	require.Contains(t, r.body, `role="status"`)
	require.Equal(t, "unsubscribed", s.status(t, "c-1", "news"))
	require.Contains(t, r.body, `value="news">`, "the saved state is shown: news unticked")

	r = post(url.Values{"action": {"unsubscribe"}, "csrf": {s.tokens.FormKey(tok)}}, "Origin", s.srv.URL) // a browser without Sec-Fetch-Site
	require.Equal(t, 200, r.code)
	require.Contains(t, r.body, "Sie wurden von „news“ abgemeldet.")
}

func TestPage_ConsentBoxGivesAndWithdrawsConsent(t *testing.T) {
	t.Parallel()
	s := setup(t)
	_, pageURL := s.links.For(5, "news", "c-1")
	tok := strings.TrimPrefix(pageURL, s.srv.URL+preferences.PagePath)
	post := func(form url.Values) response {
		form.Set("csrf", s.tokens.FormKey(tok))
		req := must(http.NewRequest(http.MethodPost, pageURL, strings.NewReader(form.Encode())))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		return do(t, req)
	}
	granted := func() (bool, bool) {
		var g bool
		err := s.env.Pool.QueryRow(context.Background(), `SELECT granted FROM consents WHERE customer_id = 'c-1' AND purpose = 'email_marketing'`).Scan(&g)
		return g, err == nil
	}
	_, found := granted()
	require.False(t, found)

	r := do(t, must(http.NewRequest(http.MethodGet, pageURL, nil)))
	require.Contains(t, r.body, "Ich willige ein, Marketing-E-Mails von Ihnen zu erhalten")
	require.Contains(t, r.body, `<input type="hidden" name="consent_shown" value="1">`)
	require.Contains(t, r.body, `id="consent" name="consent" value="on" aria-describedby="consent-hint">`, "unticked without consent")

	r = post(url.Values{"action": {"save"}, "topic": {"news"}, "consent_shown": {"1"}, "consent": {"on"}})
	require.Equal(t, 200, r.code, r.body)
	g, found := granted()
	require.True(t, found && g, "ticking the box grants email_marketing")
	require.Contains(t, r.body, `aria-describedby="consent-hint" checked>`)

	r = post(url.Values{"action": {"save"}, "topic": {"news"}})
	require.Equal(t, 200, r.code)
	g, _ = granted()
	require.True(t, g, "a form without the box leaves the consent as it is")

	r = post(url.Values{"action": {"save"}, "topic": {"news"}, "consent_shown": {"1"}})
	require.Equal(t, 200, r.code)
	g, _ = granted()
	require.False(t, g, "unticking it withdraws the consent")
	require.Equal(t, "subscribed", s.status(t, "c-1", "news"))
}

var discard = slog.New(slog.DiscardHandler)

func signedHeaders(id string, body []byte) (http.Header, error) {
	h, err := web.Sign(secret1, id, time.Now(), body)
	if err != nil {
		return nil, err
	}
	h.Set("Content-Type", "application/json")
	return h, nil
}
