package templates

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/osteele/liquid/parser"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"

	"github.com/tailor-email/tailor/internal/money"

	_ "time/tzdata" // the date filter's time zones must not depend on the host's zoneinfo
)

// ErrSkipRecipient is returned, wrapped with the source and the reason, when a content source
// declared with on_failure: skip_recipient fails. The caller should not send to this recipient.
var ErrSkipRecipient = errors.New("templates: skip recipient")

// Outcomes of a content source, as recorded in SourceOutcome.Outcome.
const (
	OutcomeFetched  = "fetched"  // fetched from the content API for this message
	OutcomeCached   = "cached"   // served from the renderer's cache, younger than cache_ttl
	OutcomeStale    = "stale"    // the source failed; the last good response (younger than stale_ttl) was used
	OutcomeFallback = "fallback" // the source failed; the manifest's fallback (or {}) was used
	OutcomeSkipped  = "skipped"  // the source failed and the recipient is skipped
)

// RenderData is what a message is rendered from.
type RenderData struct {
	// CustomerID identifies the recipient for variant assignment. Empty falls back to
	// Customer["customer_id"] (profiles before the typed profile model).
	CustomerID string
	Customer   map[string]any // the profile (customer.* in Liquid)
	Campaign   map[string]any // campaign attributes; id identifies the campaign (variant assignment)
	// Locale is the recipient's locale, a BCP 47 tag ("de-DE", "de"), used by the money filter.
	// Empty falls back to Customer["locale"], then to the manifest's locale, then to "en".
	Locale         string
	UnsubscribeURL string
	PreferencesURL string
	Now            time.Time // zero = time.Now()
	// Variant forces the named A/B variant (previews); empty assigns one from the campaign and
	// customer ids. Render fails when the template has no such variant.
	Variant string
}

// Message is a rendered email.
type Message struct {
	Subject   string `json:"subject"`
	Preheader string `json:"preheader"`
	HTML      string `json:"html"`
	Text      string `json:"text"`
	// Headers are extra mail headers the message needs (List-Unsubscribe and, for one-click
	// unsubscribe per RFC 8058, List-Unsubscribe-Post when UnsubscribeURL is set).
	Headers    map[string]string `json:"headers"`
	Provenance Provenance        `json:"provenance"`
}

// Provenance records what a message was rendered from. Its JSON form (snake_case) is what users
// see in exports and `tailor messages`.
type Provenance struct {
	Template string                   `json:"template"`
	Version  int                      `json:"version"`
	Variant  string                   `json:"variant"` // "" when the template has no variants
	Sources  map[string]SourceOutcome `json:"sources"` // by source name
}

// SourceOutcome says where one content source's data came from.
type SourceOutcome struct {
	Outcome string `json:"outcome"` // "fetched", "cached", "stale", "fallback" or "skipped"
	Hash    string `json:"hash"`    // sha256 hex of the JSON content used
	Reason  string `json:"reason"`  // why the source failed; empty when fetched or cached
}

// RenderError is a part of a message that failed to render: File (the part's file, or the
// manifest for an inline variant part) and Line locate the Liquid, Err is the cause: a
// *BudgetError, ctx's error, or liquid's error (a failing filter, a bad value).
type RenderError struct {
	Template string
	File     string
	Line     int
	Err      error
}

func (e *RenderError) Error() string {
	msg := e.Err.Error()
	var be *BudgetError
	if errors.As(e.Err, &be) {
		msg = be.msg()
	}
	return fmt.Sprintf("render template %s: %s:%d: %s", e.Template, e.File, e.Line, undoRewrite(msg))
}

// Unwrap returns Err.
func (e *RenderError) Unwrap() error { return e.Err }

// Renderer defaults.
const (
	BreakerFailuresDefault      = 5                // consecutive failures that open a source's breaker
	BreakerOpenDefault          = 30 * time.Second // how long a breaker stays open before a trial request
	CacheEntriesDefault         = 10_000
	RetryBackoffDefault         = 100 * time.Millisecond
	httpIdleConnsPerHostDefault = 64
)

// RendererConfig configures a Renderer. Zero values mean defaults.
type RendererConfig struct {
	// HTTPClient fetches content sources. Default: a client with a pooled transport and no
	// overall timeout (each source's timeout applies through the request context).
	HTTPClient *http.Client
	// Getenv expands ${VAR} in source headers at fetch time. Default: os.Getenv.
	Getenv func(string) string
	// Now is the clock for the cache and for RenderData.Now when it is zero. Default: time.Now.
	Now func() time.Time
	// CacheEntries bounds the content cache (entries, across all templates). Default 10 000.
	CacheEntries int
	// BreakerFailures is the number of consecutive failed fetches of one source (one template's
	// source, whatever the URL) that opens its circuit breaker. Default 5.
	BreakerFailures int
	// BreakerOpen is how long an open breaker rejects fetches before letting one through. Default 30s.
	BreakerOpen time.Duration
	// RetryBackoff is the wait before the first retry; it doubles for each further retry and is
	// jittered. Retries stop when the source's timeout budget would be exceeded. Default 100ms.
	RetryBackoff time.Duration
	// Budgets bound each render (sizes, loop iterations, time). Zero fields mean the defaults
	// (BudgetHTMLDefault and the other Budget*Default constants).
	Budgets Budgets
}

func (c RendererConfig) withDefaults() RendererConfig {
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = httpIdleConnsPerHostDefault
		c.HTTPClient = &http.Client{Transport: tr}
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CacheEntries <= 0 {
		c.CacheEntries = CacheEntriesDefault
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = BreakerFailuresDefault
	}
	if c.BreakerOpen <= 0 {
		c.BreakerOpen = BreakerOpenDefault
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = RetryBackoffDefault
	}
	c.Budgets = c.Budgets.withDefaults()
	return c
}

// Renderer renders templates and fetches their content sources. It holds the content cache and
// the circuit breakers, so one Renderer should be shared by all renders of a process. It is safe
// for concurrent use.
type Renderer struct {
	cfg   RendererConfig
	cache *cache
	group singleflight.Group

	mu       sync.Mutex
	breakers map[string]*gobreaker.CircuitBreaker[*entry]

	envs     sync.Map // locale -> *env
	envCount atomic.Int64
	lastEnv  atomic.Pointer[env] // most renders of a campaign share a locale
}

// envsMax bounds the envs a Renderer keeps: locales come from profiles.
const envsMax = 256

// env returns the rendering configuration for locale.
func (r *Renderer) env(locale string) *env {
	if e := r.lastEnv.Load(); e != nil && e.name == locale {
		return e
	}
	if e, ok := r.envs.Load(locale); ok {
		r.lastEnv.Store(e.(*env))
		return e.(*env)
	}
	e := newEnv(r.cfg.Budgets, money.ParseLocale(locale))
	e.name = locale
	r.lastEnv.Store(e)
	if r.envCount.Load() < envsMax {
		if prev, loaded := r.envs.LoadOrStore(locale, e); loaded {
			return prev.(*env)
		}
		r.envCount.Add(1)
	}
	return e
}

// NewRenderer returns a Renderer.
func NewRenderer(cfg RendererConfig) *Renderer {
	cfg = cfg.withDefaults()
	return &Renderer{
		cfg:      cfg,
		cache:    newCache(cfg.CacheEntries),
		breakers: map[string]*gobreaker.CircuitBreaker[*entry]{},
	}
}

// Render renders t for one recipient. Content sources are fetched concurrently; a failing source
// degrades the message (stale data or fallback, recorded in Provenance) rather than failing it,
// except that a source with on_failure: skip_recipient makes Render return an error wrapping
// ErrSkipRecipient. Render returns ctx's error if ctx ends first, and a *RenderError when a
// Liquid part fails at run time: it wraps ctx's error, a *BudgetError when the render exceeded
// the renderer's Budgets (see IsTemplateFault), or liquid's error.
func (r *Renderer) Render(ctx context.Context, t *Template, d RenderData) (*Message, error) {
	now := d.Now
	if now.IsZero() {
		now = r.cfg.Now()
	}
	v := t.pick(d)
	if d.Variant != "" {
		var err error
		if v, err = t.variant(d.Variant); err != nil {
			return nil, err
		}
	}
	campaign := d.Campaign
	if campaign == nil {
		campaign = map[string]any{}
	}
	bindings := t.bindings(v, applyDefaults(d.Customer, t.defaults), campaign, now, d.UnsubscribeURL, d.PreferencesURL)
	customerLocale, _ := d.Customer["locale"].(string)
	e := r.env(cmpOr(d.Locale, cmpOr(customerLocale, t.locale)))
	b := newBudget(ctx, r.cfg.Budgets, r.cfg.Now)
	defer b.release()

	content, outcomes, err := r.fetchAll(ctx, t, e, bindings, b)
	if err != nil {
		return nil, err
	}
	bindings["content"] = content
	b.restart()

	m := &Message{
		Headers: map[string]string{},
		Provenance: Provenance{
			Template: t.name,
			Version:  t.version,
			Variant:  v.name,
			Sources:  outcomes,
		},
	}
	dst := [...]*string{&m.Subject, &m.Preheader, &m.HTML, &m.Text}
	for i, p := range v.parts.list(r.cfg.Budgets) {
		if p.part == nil {
			continue
		}
		out, err := p.render(e, bindings, b, p.kind, p.max)
		if err != nil {
			return nil, r.renderError(ctx, t, v, campaign, now, p.part, err)
		}
		*dst[i] = out
	}
	// Subject and preheader are single lines: a line break from a profile value must not reach
	// a mail header.
	m.Subject = oneLine(m.Subject)
	m.Preheader = oneLine(m.Preheader)
	if d.UnsubscribeURL != "" {
		m.Headers["List-Unsubscribe"] = "<" + d.UnsubscribeURL + ">"
		m.Headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
	}
	return m, nil
}

// oneLine folds runs of white space into one space, keeping the no-break spaces that hold
// "19,99 €" together.
func oneLine(s string) string {
	ascii := true
	for i := 0; i < len(s) && ascii; i++ {
		ascii = s[i] < utf8.RuneSelf
	}
	if ascii {
		return strings.Join(strings.Fields(s), " ")
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) && r != '\u00a0' && r != '\u202f' && r != '\u2007'
	}), " ")
}

// bindings are the Liquid variables of a render, content aside.
func (t *Template) bindings(v variant, customer, campaign map[string]any, now time.Time, unsubscribeURL, preferencesURL string) map[string]any {
	return map[string]any{
		"customer":        customer,
		"campaign":        campaign,
		"variant":         v.name,
		"unsubscribe_url": unsubscribeURL,
		"preferences_url": preferencesURL,
		"now":             now,
	}
}

// budgetedPart is a part of a message with its size budget.
type budgetedPart struct {
	*part
	kind Budget
	max  int
}

// list returns the parts of a message (subject, preheader, html, text; nil when absent) with
// their budgets.
func (ps parts) list(lim Budgets) [4]budgetedPart {
	return [...]budgetedPart{
		{ps.subject, BudgetSubject, lim.Subject}, {ps.preheader, BudgetPreheader, lim.Preheader},
		{ps.html, BudgetHTML, lim.HTML}, {ps.text, BudgetText, lim.Text},
	}
}

// renderError turns the error of rendering p into a *RenderError; a budget breach learns whether
// it is the template's fault.
func (r *Renderer) renderError(ctx context.Context, t *Template, v variant, campaign map[string]any, now time.Time, p *part, err error) error {
	re := &RenderError{Template: t.name, File: p.file, Err: err}
	switch stop := stopCause(err); {
	case stop != nil:
		re.Err = stop
		var be *BudgetError
		if errors.As(stop, &be) {
			re.File, re.Line = be.File, be.Line
			be.Template = r.templateFault(ctx, t, v, campaign, now)
			countBreach(be.Budget)
		}
	default:
		var le parser.Error
		if errors.As(err, &le) {
			re.Line = le.LineNumber()
			if c := le.Cause(); c != nil {
				re.Err = c
			}
		}
	}
	return re
}

// faultKey identifies a templateFault verdict.
type faultKey struct {
	variant, campaign string
	budgets           Budgets
}

// templateFault reports whether variant v of t exceeds a budget when rendered with no recipient
// data: the manifest defaults as the profile, every content source at its fallback, no locale but
// the manifest's. Such a breach happens for every recipient. The verdict is remembered per
// variant, campaign id and budgets.
func (r *Renderer) templateFault(ctx context.Context, t *Template, v variant, campaign map[string]any, now time.Time) bool {
	key := faultKey{variant: v.name, campaign: fmt.Sprint(campaign["id"]), budgets: r.cfg.Budgets}
	if f, ok := t.faults.Load(key); ok {
		return f.(bool)
	}
	bindings := t.bindings(v, applyDefaults(nil, t.defaults), campaign, now, "", "")
	bindings["content"] = t.fallbacks()
	e := r.env(t.locale)
	b := newBudget(ctx, r.cfg.Budgets, r.cfg.Now)
	defer b.release()
	fault := false
	for _, p := range v.parts.list(r.cfg.Budgets) {
		if p.part == nil {
			continue
		}
		if _, err := p.render(e, bindings, b, p.kind, p.max); err != nil {
			var be *BudgetError
			if errors.As(stopCause(err), &be) {
				fault = true
				break
			}
		}
	}
	if ctx.Err() == nil {
		t.faults.Store(key, fault)
	}
	return fault
}

// fallbacks is the content of every source at its fallback.
func (t *Template) fallbacks() map[string]any {
	content := make(map[string]any, len(t.sources))
	for _, s := range t.sources {
		content[s.name] = s.fallback
	}
	return content
}

// applyDefaults returns the profile with the manifest defaults filled in for fields that are
// missing, null or the empty string. The caller's map is not modified; it is returned as it is
// when no default applies (the common case: one copy of a ~70-field view per recipient saved).
func applyDefaults(profile, defaults map[string]any) map[string]any {
	needed := false
	for k := range defaults {
		if cur, ok := profile[k]; !ok || cur == nil || cur == "" {
			needed = true
			break
		}
	}
	if !needed && profile != nil {
		return profile
	}
	out := make(map[string]any, len(profile)+len(defaults))
	for k, v := range profile {
		out[k] = v
	}
	for k, v := range defaults {
		if cur, ok := out[k]; !ok || cur == nil || cur == "" {
			out[k] = v
		}
	}
	return out
}

// pick assigns the recipient to a variant: a hash of (campaign id, customer id) taken modulo the
// total weight, so a customer always gets the same variant of a campaign and different campaigns
// split the audience independently.
func (t *Template) pick(d RenderData) variant {
	if len(t.variants) == 0 || t.weights <= 0 {
		return variant{parts: t.base}
	}
	customerID := d.CustomerID
	if customerID == "" {
		customerID = fmt.Sprint(d.Customer["customer_id"])
	}
	n := assignBucket(fmt.Sprint(d.Campaign["id"]), customerID, t.weights)
	for _, v := range t.variants {
		if n < v.weight {
			return v
		}
		n -= v.weight
	}
	return t.variants[len(t.variants)-1]
}

// variant returns the variant called name.
func (t *Template) variant(name string) (variant, error) {
	for _, v := range t.variants {
		if v.name == name {
			return v, nil
		}
	}
	if len(t.variants) == 0 {
		return variant{}, fmt.Errorf("template %s has no variants (asked for %q)", t.name, name)
	}
	return variant{}, fmt.Errorf("template %s has no variant %q (it has %s)", t.name, name, strings.Join(t.Variants(), ", "))
}

func assignBucket(campaignID, customerID string, total int) int {
	h := sha256.New()
	h.Write([]byte(campaignID))
	h.Write([]byte{0})
	h.Write([]byte(customerID))
	var sum [sha256.Size]byte
	return int(binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) % uint64(total))
}
