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
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"

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
	Customer       map[string]any // the profile; customer_id identifies the customer
	Campaign       map[string]any // campaign attributes; id identifies the campaign (variant assignment)
	UnsubscribeURL string
	PreferencesURL string
	Now            time.Time // zero = time.Now()
	// Variant forces the named A/B variant (previews); empty assigns one from the campaign and
	// customer ids. Render fails when the template has no such variant.
	Variant string
}

// Message is a rendered email.
type Message struct {
	Subject, Preheader, HTML, Text string
	// Headers are extra mail headers the message needs (List-Unsubscribe and, for one-click
	// unsubscribe per RFC 8058, List-Unsubscribe-Post when UnsubscribeURL is set).
	Headers    map[string]string
	Provenance Provenance
}

// Provenance records what a message was rendered from.
type Provenance struct {
	Template string
	Version  int
	Variant  string                   // "" when the template has no variants
	Sources  map[string]SourceOutcome // by source name
}

// SourceOutcome says where one content source's data came from.
type SourceOutcome struct {
	Outcome string // "fetched", "cached", "stale", "fallback" or "skipped"
	Hash    string // sha256 hex of the JSON content used
	Reason  string // why the source failed; empty when fetched or cached
}

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
// ErrSkipRecipient. Render returns ctx's error if ctx ends first, and an error when a Liquid part
// fails at run time.
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
	bindings := map[string]any{
		"customer":        applyDefaults(d.Customer, t.defaults),
		"campaign":        campaign,
		"variant":         v.name,
		"unsubscribe_url": d.UnsubscribeURL,
		"preferences_url": d.PreferencesURL,
		"now":             now,
	}

	content, outcomes, err := r.fetchAll(ctx, t, bindings)
	if err != nil {
		return nil, err
	}
	bindings["content"] = content

	m := &Message{
		Headers: map[string]string{},
		Provenance: Provenance{
			Template: t.name,
			Version:  t.version,
			Variant:  v.name,
			Sources:  outcomes,
		},
	}
	for _, p := range []struct {
		file string
		tpl  *part
		dst  *string
	}{
		{FileSubject, v.parts.subject, &m.Subject},
		{FilePreheader, v.parts.preheader, &m.Preheader},
		{FileHTML, v.parts.html, &m.HTML},
		{FileText, v.parts.text, &m.Text},
	} {
		if p.tpl == nil {
			continue
		}
		out, err := p.tpl.render(bindings)
		if err != nil {
			msg := err.Error()
			if c := err.Cause(); c != nil {
				msg = c.Error()
			}
			return nil, fmt.Errorf("render template %s: %s:%d: %s", t.name, p.file, err.LineNumber(), undoRewrite(msg))
		}
		*p.dst = out
	}
	// Subject and preheader are single lines: a line break from a profile value must not reach
	// a mail header.
	m.Subject = strings.Join(strings.Fields(m.Subject), " ")
	m.Preheader = strings.Join(strings.Fields(m.Preheader), " ")
	if d.UnsubscribeURL != "" {
		m.Headers["List-Unsubscribe"] = "<" + d.UnsubscribeURL + ">"
		m.Headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
	}
	return m, nil
}

// applyDefaults returns the profile with the manifest defaults filled in for fields that are
// missing, null or the empty string. The caller's map is not modified.
func applyDefaults(profile, defaults map[string]any) map[string]any {
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
	n := assignBucket(fmt.Sprint(d.Campaign["id"]), fmt.Sprint(d.Customer["customer_id"]), t.weights)
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
