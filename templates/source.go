package templates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// entry is one good response of a content source.
type entry struct {
	value     any // decoded JSON; shared read-only between renders
	hash      string
	fetchedAt time.Time
	keepUntil time.Time // max(cache_ttl, stale_ttl) after fetchedAt
}

// fetchError is a failed fetch; its message is the Reason recorded in the provenance.
type fetchError struct {
	reason    string
	retryable bool
}

func (e *fetchError) Error() string { return e.reason }

// sourceResult is the content a render uses for one source.
type sourceResult struct {
	value   any
	outcome SourceOutcome
	err     error // ErrSkipRecipient or ctx's error
}

func (r *Renderer) fetchAll(ctx context.Context, t *Template, e *env, bindings map[string]any, b *budget) (map[string]any, map[string]SourceOutcome, error) {
	content := make(map[string]any, len(t.sources))
	outcomes := make(map[string]SourceOutcome, len(t.sources))
	if len(t.sources) == 0 {
		return content, outcomes, nil
	}
	// Look every source up in the cache first, without goroutines: the common case in a
	// campaign is that all of them are cached.
	results := make([]sourceResult, len(t.sources))
	var misses []int
	urls := make([]string, len(t.sources))
	for i, s := range t.sources {
		tpl, err := r.sourceURL(s)
		if err != nil {
			results[i] = r.failed(t, s, "", &fetchError{reason: "url: " + err.Error()})
			continue
		}
		url, err := tpl.render(e, bindings, b, budgetURL, sourceURLMax)
		if err != nil {
			results[i] = r.failed(t, s, "", &fetchError{reason: "url: " + err.Error()})
			continue
		}
		urls[i] = strings.TrimSpace(url)
		if e := r.cache.get(s.cacheKey(urls[i])); e != nil && r.cfg.Now().Sub(e.fetchedAt) < s.cacheTTL {
			results[i] = sourceResult{value: e.value, outcome: SourceOutcome{Outcome: OutcomeCached, Hash: e.hash}}
			continue
		}
		misses = append(misses, i)
	}
	if len(misses) == 1 {
		i := misses[0]
		results[i] = r.resolve(ctx, t, t.sources[i], urls[i])
	} else if len(misses) > 1 {
		var wg sync.WaitGroup
		for _, i := range misses {
			wg.Go(func() { results[i] = r.resolve(ctx, t, t.sources[i], urls[i]) })
		}
		wg.Wait()
	}
	var errs []error
	for i, s := range t.sources {
		res := results[i]
		if res.err != nil {
			errs = append(errs, res.err)
		}
		content[s.name] = res.value
		outcomes[s.name] = res.outcome
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if len(errs) > 0 {
		return nil, outcomes, errors.Join(errs...)
	}
	return content, outcomes, nil
}

// cacheKey is the cache key of the source's response for url: template, source, method and url.
func (s *source) cacheKey(url string) string { return s.keyPrefix + url }

// resolve returns the content of one source for one message: cached, fetched, stale or fallback.
func (r *Renderer) resolve(ctx context.Context, t *Template, s *source, url string) sourceResult {
	key := s.cacheKey(url)
	if e := r.cache.get(key); e != nil && r.cfg.Now().Sub(e.fetchedAt) < s.cacheTTL {
		return sourceResult{value: e.value, outcome: SourceOutcome{Outcome: OutcomeCached, Hash: e.hash}}
	}

	ch := r.group.DoChan(key, func() (any, error) {
		// Re-check: a fetch of this key may have completed between the lookup above and now.
		if e := r.cache.get(key); e != nil && r.cfg.Now().Sub(e.fetchedAt) < s.cacheTTL {
			return e, nil
		}
		// The fetch is shared by every render waiting on this key, so no single caller's
		// cancellation may abort it; the source's timeout bounds it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		e, err := r.breaker(t, s).Execute(func() (*entry, error) {
			return r.fetchWithRetries(fctx, s, url)
		})
		if err != nil {
			return nil, err
		}
		e.keepUntil = e.fetchedAt.Add(max(s.cacheTTL, s.staleTTL))
		if s.cacheTTL > 0 || s.staleTTL > 0 {
			r.cache.put(key, e, r.cfg.Now())
		}
		return e, nil
	})
	select {
	case <-ctx.Done():
		return sourceResult{err: ctx.Err(), outcome: SourceOutcome{Outcome: OutcomeSkipped, Reason: ctx.Err().Error()}}
	case res := <-ch:
		if res.Err == nil {
			e := res.Val.(*entry)
			return sourceResult{value: e.value, outcome: SourceOutcome{Outcome: OutcomeFetched, Hash: e.hash}}
		}
		return r.failed(t, s, key, res.Err)
	}
}

// failed chooses what a failed source degrades to: stale data, the recipient's skip, or the fallback.
func (r *Renderer) failed(t *Template, s *source, key string, err error) sourceResult {
	reason := err.Error()
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		reason = "circuit open"
	}
	if key != "" && s.staleTTL > 0 {
		if e := r.cache.get(key); e != nil && r.cfg.Now().Sub(e.fetchedAt) < s.staleTTL {
			return sourceResult{value: e.value, outcome: SourceOutcome{Outcome: OutcomeStale, Hash: e.hash, Reason: reason}}
		}
	}
	if s.skip {
		return sourceResult{
			outcome: SourceOutcome{Outcome: OutcomeSkipped, Reason: reason},
			err:     fmt.Errorf("%w: template %s content %s: %s", ErrSkipRecipient, t.name, s.name, reason),
		}
	}
	return sourceResult{value: s.fallback, outcome: SourceOutcome{Outcome: OutcomeFallback, Hash: s.fallbackHash, Reason: reason}}
}

func (r *Renderer) breaker(t *Template, s *source) *gobreaker.CircuitBreaker[*entry] {
	name := t.name + "/" + s.name
	r.mu.Lock()
	defer r.mu.Unlock()
	cb, ok := r.breakers[name]
	if !ok {
		failures := uint32(r.cfg.BreakerFailures)
		cb = gobreaker.NewCircuitBreaker[*entry](gobreaker.Settings{
			Name:        name,
			Timeout:     r.cfg.BreakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			OnStateChange: func(name string, _, to gobreaker.State) {
				setBreakerState(name, int32(to))
			},
		})
		r.breakers[name] = cb
		setBreakerState(name, BreakerClosed)
	}
	return cb
}

// fetchWithRetries fetches url, retrying retryable failures with jittered exponential backoff
// while the source's timeout budget (ctx's deadline) allows.
func (r *Renderer) fetchWithRetries(ctx context.Context, s *source, url string) (*entry, error) {
	backoff := r.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		e, err := r.fetch(ctx, s, url)
		if err == nil {
			return e, nil
		}
		var fe *fetchError
		if attempt >= s.retries || !errors.As(err, &fe) || !fe.retryable {
			return nil, err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		case <-timer.C:
		}
		backoff *= 2
	}
}

// envRef is ${VAR} or ${VAR:-default} (the default applies when VAR is unset or empty, as in sh).
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in s with getenv's values.
func expandEnv(s string, getenv func(string) string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v := getenv(m[1]); v != "" {
			return v
		}
		return m[2]
	})
}

// expandedURL is a source URL with the environment expanded, for one Renderer.
type expandedURL struct {
	r   *Renderer
	url *part
	err error
}

// sourceURL returns the Liquid of s's url with ${VAR} expanded by r's Getenv. The expansion
// happens on the manifest's text, before Liquid runs, so that a value from a profile can never
// name an environment variable; it is done once per Renderer and source. An expanded value is
// literal text, never Liquid.
func (r *Renderer) sourceURL(s *source) (*part, error) {
	if !s.urlEnv {
		return s.url, nil
	}
	if e := s.expanded.Load(); e != nil && e.r == r {
		return e.url, e.err
	}
	e := &expandedURL{r: r}
	var bad []string
	src := envRef.ReplaceAllStringFunc(s.urlSrc, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		v := r.cfg.Getenv(m[1])
		if v == "" {
			v = m[2]
		}
		if strings.Contains(v, "{%") || strings.Contains(v, "{{") || strings.Contains(v, "%}") || strings.Contains(v, "}}") {
			bad = append(bad, m[1])
		}
		return v
	})
	if len(bad) > 0 {
		e.err = fmt.Errorf("environment variable %s must not contain Liquid delimiters", strings.Join(bad, ", "))
	} else if p, err := compilePart(FileManifest, src, s.urlLine, false); err != nil {
		e.err = err
	} else {
		e.url = p
	}
	s.expanded.Store(e)
	return e.url, e.err
}

// fetch makes one request.
func (r *Renderer) fetch(ctx context.Context, s *source, url string) (*entry, error) {
	req, err := http.NewRequestWithContext(ctx, s.method, url, nil)
	if err != nil {
		return nil, &fetchError{reason: fmt.Sprintf("invalid url %q", url)}
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range s.headers {
		req.Header.Set(k, expandEnv(v, r.cfg.Getenv))
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, r.transportError(ctx, s, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		return nil, &fetchError{
			reason:    fmt.Sprintf("HTTP %d", resp.StatusCode),
			retryable: resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests,
		}
	}
	if ct := resp.Header.Get("Content-Type"); !isJSON(ct) {
		if ct == "" {
			ct = "no Content-Type"
		} else if mt, _, err := mime.ParseMediaType(ct); err == nil {
			ct = mt
		}
		return nil, &fetchError{reason: "not JSON: " + ct}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, SourceBodyLimit+1))
	if err != nil {
		return nil, r.transportError(ctx, s, err)
	}
	if len(body) > SourceBodyLimit {
		return nil, &fetchError{reason: "body over 1 MB"}
	}
	v, err := decodeContent(body)
	if err != nil {
		return nil, &fetchError{reason: err.Error()}
	}
	return &entry{value: v, hash: hashBytes(body), fetchedAt: r.cfg.Now()}, nil
}

// decodeContent decodes a content API's response body: exactly one JSON value, of at most
// SourceBodyLimit bytes. Numbers are float64 and objects map[string]any, as Liquid expects.
func decodeContent(body []byte) (any, error) {
	if len(body) > SourceBodyLimit {
		return nil, errors.New("body over 1 MB")
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("invalid JSON")
	}
	// Decoder.More is false before a stray ] or }, so check that only white space follows.
	if rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, errors.New("invalid JSON")
	}
	return v, nil
}

func (r *Renderer) transportError(ctx context.Context, s *source, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return &fetchError{reason: fmt.Sprintf("timeout after %s", s.timeout)}
	}
	return &fetchError{reason: "request failed: " + err.Error(), retryable: true}
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// cache holds good responses by key until their keepUntil. It is bounded: when full, expired
// entries are dropped, then arbitrary ones.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*entry
}

func newCache(max int) *cache { return &cache{max: max, entries: map[string]*entry{}} }

func (c *cache) get(key string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key]
}

func (c *cache) put(key string, e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		// Full: drop the expired entries, then arbitrary ones down to 7/8 of max, so the next
		// max/8 puts find room without another pass over the whole map (a pass per put made a
		// campaign of distinct URLs quadratic: 100 000 recipients spent 20 CPU seconds here).
		for k, old := range c.entries {
			if now.After(old.keepUntil) {
				delete(c.entries, k)
			}
		}
		keep := min(c.max-c.max/8, c.max-1)
		for k := range c.entries {
			if len(c.entries) <= keep {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}
