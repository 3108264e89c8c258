package web

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/preferences"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.css
	pageCSS  string
	pageTmpl = template.Must(template.New("page").Parse(pageHTML))
	// pageCSP allows nothing but the page's own inline style (by hash) and forms posting back.
	pageCSP = func() string {
		sum := sha256.Sum256([]byte(pageCSS))
		return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
			"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	}()
)

var (
	errCrossOrigin = errors.New("cross-origin form post")
	errForm        = errors.New("form not readable or not from this page")
)

// topicView is one topic's row on the page.
type topicView struct {
	Name, Description string
	Checked, Pending  bool
}

// view is what the template renders.
type view struct {
	Lang, Title     string
	T               text
	CSS             template.CSS
	Failure         string // an error page's explanation; nothing else is shown then
	Notice, Confirm string
	Email           string
	Topics          []topicView
	UnsubscribedAll bool
	Blocked         bool
	Consent         bool // email_marketing granted
	Action, FormKey string
}

func (h *Handler) render(w http.ResponseWriter, code int, v view) {
	v.CSS = template.CSS(pageCSS)
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, v); err != nil {
		h.cfg.Logger.Error("preference page: render", "err", err)
		http.Error(w, "preference page unavailable", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Language", v.Lang)
	hd.Set("Content-Security-Policy", pageCSP)
	hd.Set("Referrer-Policy", "same-origin") // the token is in the URL: never to another site (and same-origin posts keep their Origin)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// pageView builds the view of a customer's page.
func (h *Handler) pageView(r *http.Request, p *preferences.Page, token, action string) view {
	lang := locale(p.Locale, r.Header.Get("Accept-Language"))
	t := texts[lang]
	v := view{Lang: lang, T: t, Title: t.T("title"), Email: p.MaskedEmail(), UnsubscribedAll: p.UnsubscribedAll,
		Blocked: p.Blocked != "", Consent: p.MarketingConsent, Action: action, FormKey: h.cfg.Tokens.FormKey(token)}
	for _, tp := range p.Topics {
		v.Topics = append(v.Topics, topicView{Name: tp.Name, Description: tp.Description, Checked: tp.Subscribed(), Pending: tp.Status == profile.StatusPending})
	}
	return v
}

// failure shows a page that explains the problem and shows no data.
func (h *Handler) failure(w http.ResponseWriter, r *http.Request, err error) {
	lang := locale("", r.Header.Get("Accept-Language"))
	t := texts[lang]
	code, key := http.StatusServiceUnavailable, "error"
	switch {
	case errors.Is(err, preferences.ErrTokenInvalid):
		code, key = http.StatusBadRequest, "invalid"
	case errors.Is(err, preferences.ErrTokenExpired):
		code, key = http.StatusGone, "expired"
	case errors.Is(err, preferences.ErrUnknownCustomer):
		code, key = http.StatusNotFound, "unknown"
	case errors.Is(err, errCrossOrigin), errors.Is(err, errForm):
		code, key = http.StatusForbidden, "form"
	default:
		h.cfg.Logger.Error("preference page", "err", err)
	}
	h.render(w, code, view{Lang: lang, T: t, Title: t.T(key + "_title"), Failure: t.T(key + "_body")})
}

// showPage serves GET /preferences/{token}.
func (h *Handler) showPage(w http.ResponseWriter, r *http.Request) {
	h.show(w, r, false)
}

// showUnsubscribe serves GET /unsubscribe/{token}: the page with a confirmation button, never
// an unsubscribe (mail scanners follow links).
func (h *Handler) showUnsubscribe(w http.ResponseWriter, r *http.Request) {
	h.show(w, r, true)
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request, confirm bool) {
	token := r.PathValue("token")
	claims, err := h.cfg.Tokens.Parse(token)
	if err != nil {
		h.failure(w, r, err)
		return
	}
	p, err := h.cfg.Store.Page(r.Context(), claims)
	if err != nil {
		h.failure(w, r, err)
		return
	}
	action := token
	if confirm {
		action = "../" + strings.TrimPrefix(preferences.PagePath, "/") + token
	}
	v := h.pageView(r, p, token, action)
	if confirm && !p.UnsubscribedAll {
		v.Confirm = v.T.T("confirm_all")
		if claims.Topic != "" {
			v.Confirm = v.T.T("confirm_topic", "topic", claims.Topic)
		}
	}
	h.render(w, http.StatusOK, v)
}

// savePage serves POST /preferences/{token}: the page's form (action save) or its
// confirmation button (action unsubscribe). It needs the form key the page carries and a
// same-origin request (http.CrossOriginProtection), and answers with the page and a notice.
func (h *Handler) savePage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	claims, err := h.cfg.Tokens.Parse(token)
	if err != nil {
		h.failure(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, FormBodyLimit)
	if err := r.ParseForm(); err != nil || !h.cfg.Tokens.CheckFormKey(token, r.PostForm.Get("csrf")) {
		h.failure(w, r, errForm)
		return
	}
	ctx := r.Context()
	var p *preferences.Page
	var notice string
	switch r.PostForm.Get("action") {
	case "unsubscribe":
		res, err := h.cfg.Store.OneClick(ctx, claims)
		if err != nil {
			h.failure(w, r, err)
			return
		}
		unsubscribes.WithLabelValues("page", scope(res.Topic)).Inc()
		if p, err = h.cfg.Store.Page(ctx, claims); err != nil {
			h.failure(w, r, err)
			return
		}
		notice = "unsubscribed_all"
		if res.Topic != "" {
			notice = "unsubscribed_topic"
		}
	case "save":
		ch := preferences.Choices{Subscribed: map[string]bool{}, UnsubscribeAll: r.PostForm.Get("unsubscribe_all") == "on"}
		if r.PostForm.Get("consent_shown") == "1" { // an unticked box sends nothing: the marker says it was there
			granted := r.PostForm.Get("consent") == "on"
			ch.MarketingConsent = &granted
		}
		for _, t := range r.PostForm["topic"] {
			ch.Subscribed[t] = true
		}
		if p, err = h.cfg.Store.SavePage(ctx, claims, ch); err != nil {
			h.failure(w, r, err)
			return
		}
		pageSaves.Inc()
		notice = "saved"
	default:
		h.failure(w, r, errForm)
		return
	}
	v := h.pageView(r, p, token, token)
	v.Notice = v.T.T(notice, "topic", claims.Topic)
	h.render(w, http.StatusOK, v)
}

func scope(topic string) string {
	if topic == "" {
		return "all"
	}
	return "topic"
}

// oneClickBody is the one body RFC 8058 defines.
const oneClickBody = "List-Unsubscribe=One-Click"

// oneClick serves POST /unsubscribe/{token}, RFC 8058: a body of exactly
// "List-Unsubscribe=One-Click" (application/x-www-form-urlencoded, or that one field as
// multipart/form-data) unsubscribes, with no cookie or login: from the token's topic, or from
// everything. It answers 200 also when repeated; a wrong body is 400 and a dead letter (source
// one_click), a bad link 400, an expired one 410.
func (h *Handler) oneClick(w http.ResponseWriter, r *http.Request) {
	body, err := readOneClick(w, r)
	if err != nil {
		if derr := h.cfg.DeadLetters.Put(r.Context(), DeadLetterOneClick, "one-click unsubscribe: "+err.Error(), body); derr != nil {
			h.cfg.Logger.Error("one-click: dead letter", "err", derr)
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	claims, err := h.cfg.Tokens.Parse(r.PathValue("token"))
	switch {
	case errors.Is(err, preferences.ErrTokenExpired):
		http.Error(w, "this unsubscribe link has expired: use the link of a more recent message", http.StatusGone)
		return
	case err != nil:
		http.Error(w, "this unsubscribe link is not valid", http.StatusBadRequest)
		return
	}
	res, err := h.cfg.Store.OneClick(r.Context(), claims)
	switch {
	case errors.Is(err, preferences.ErrUnknownCustomer):
		// Deleted or forgotten: no mail goes to it, which is what the sender asked for.
		res = preferences.Unsubscribed{Topic: claims.Topic}
	case err != nil:
		h.cfg.Logger.Error("one-click unsubscribe", "err", err)
		http.Error(w, "the unsubscribe could not be recorded, retry later", http.StatusServiceUnavailable)
		return
	}
	unsubscribes.WithLabelValues("one_click", scope(res.Topic)).Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if res.Topic != "" {
		_, _ = w.Write([]byte("unsubscribed from " + res.Topic + "\n"))
		return
	}
	_, _ = w.Write([]byte("unsubscribed from all marketing email\n"))
}

// readOneClick reads a one-click body and says what is wrong with it, if anything.
func readOneClick(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, OneClickBodyLimit))
	if err != nil {
		return body, errors.New("body too large or unreadable: send exactly " + oneClickBody)
	}
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Header.Get("Content-Type") == "" {
		ct, err = "application/x-www-form-urlencoded", nil
	}
	switch {
	case err != nil:
		return body, errors.New("unreadable Content-Type")
	case ct == "application/x-www-form-urlencoded":
		if strings.TrimRight(string(body), "\r\n") != oneClickBody {
			return body, errors.New("the body must be exactly " + oneClickBody + " (RFC 8058)")
		}
		return body, nil
	case ct == "multipart/form-data":
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var fields []string
		for {
			part, err := mr.NextPart()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return body, errors.New("malformed multipart body")
				}
				break
			}
			v, err := io.ReadAll(part)
			if err != nil {
				return body, errors.New("malformed multipart body")
			}
			fields = append(fields, part.FormName()+"="+strings.TrimRight(string(v), "\r\n"))
		}
		if len(fields) != 1 || fields[0] != oneClickBody {
			return body, errors.New("the form must have exactly one field, List-Unsubscribe with the value One-Click (RFC 8058)")
		}
		return body, nil
	default:
		return body, errors.New("Content-Type " + ct + ": send application/x-www-form-urlencoded or multipart/form-data")
	}
}
