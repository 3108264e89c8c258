// Package templates owns email templates: parsing a template folder (Liquid parts plus a
// template.yaml manifest), fetching the content sources a template declares (timeouts, retries,
// cache, request coalescing, circuit breaking, fallbacks), and rendering a Message for one
// recipient with a record of where every piece of content came from (Provenance).
//
// A template folder holds:
//
//	template.yaml  manifest: name, version, customer defaults, content sources, A/B variants
//	subject        Liquid, not escaped
//	preheader      Liquid, optional, not escaped
//	html           Liquid; every {{ output }} is HTML-escaped unless it ends in | raw
//	text           Liquid, not escaped
//
// Every file is at most MaxPartSize (512 KB), the manifest at most MaxManifestSize (64 KB); errors
// name the file (and line where there is one) as *SyntaxError.
//
// Templates are parsed once (Load, FromFiles) and are then immutable; a Renderer is safe for
// concurrent use and shares its content cache across all templates it renders.
//
// Bindings available to Liquid: customer.* (the profile with the manifest defaults applied),
// content.<source> (decoded JSON from the source, or its fallback), campaign.*, variant,
// unsubscribe_url, preferences_url and now. Liquid is never evaluated inside bound values.
//
// Extra filters: money, date with an optional IANA time zone
// ({{ now | date: "%Y-%m-%d %H:%M", "Europe/Paris" }}) and raw (html part only: output as is).
// The {% include %} tag is disabled: a template is self-contained. money formats minor units with
// internal/money (CLDR digits and symbols): {{ 1999 | money: "EUR" }} is €19.99 in en and
// 19,99 € in de and fr, {{ 1999 | money: "KWD" }} is KWD 1.999; the locale is the render's
// (RenderData.Locale, else the profile's locale field, else the manifest's locale:, else en) or
// an explicit second argument ({{ p | money: "EUR", "de" }}).
//
// Render budgets (RendererConfig.Budgets; budget.go): a template runs once per recipient, so each
// render is bounded in rendered size per part (html 1 MB, text 256 KB, subject and preheader
// 1 KB), loop iterations per message (100 000), the size of any string or array a filter, assign
// or capture builds (1 MB, 100 000 items) and time per message (1 s). Both renderers enforce them
// before the oversized value exists and stop with a *BudgetError naming the budget, file and line
// (errors.Is ErrBudgetExceeded), wrapped like every run-time error in a *RenderError. A breach
// is the template's fault (BudgetError.Template, IsTemplateFault) when the same variant, rendered
// with only the manifest defaults as profile and every source at its fallback, also exceeds a
// budget: it would happen to every recipient, so a campaign should stop; otherwise one recipient's
// data caused it (a huge content array), and that recipient should be skipped.
//
// Content sources: the URL is Liquid (not escaped). ${VAR} and ${VAR:-default} (default when
// VAR is unset or empty) are expanded from the environment (RendererConfig.Getenv) in headers at
// fetch time and in the URL once per Renderer, on the manifest's text before Liquid runs, so a
// profile value never names a variable and an expanded value is never Liquid; e.g.
// url: "${TAILOR_CONTENT_URL:-http://127.0.0.1:8089}/offer" lets each environment point at its
// own content API. Each source has a timeout budget (default 2s) that covers its
// retries (default 1, on network errors, 5xx and 429, with jittered backoff), a 1 MB body limit
// and a JSON-only check. Good responses are cached by rendered URL for cache_ttl (default 60s;
// 0 disables) and concurrent fetches of one URL are coalesced into one request. On failure a
// source uses the last good response younger than stale_ttl (outcome "stale"), else its fallback
// (outcome "fallback", {} when none is declared), or with on_failure: skip_recipient makes Render
// return ErrSkipRecipient. A circuit breaker per template source stops calling a failing API
// ("circuit open").
//
// A/B variants (manifest "variants": name, weight, and subject/preheader/html/text overrides,
// each a file name of the folder or inline Liquid) are assigned from a hash of (campaign id,
// customer id): stable per customer and campaign, split by weight.
//
// Validate checks a folder before it is published: syntax, manifest schema, unknown filters and
// variables (against a sample profile), and a sample render under the budgets; every error names
// file and line. Its Report also carries warnings, which do not fail validation, where mail
// clients hurt recipients: html over Gmail's 102 KB clipping, subjects over 150 characters,
// images without alt, http:// links.
// Store keeps published versions in Postgres; a published (name, version) is immutable.
//
// Rendering runs on a fast path (fast.go) that mirrors liquid's renderer over liquid's own parse
// tree and falls back to liquid for what it does not cover and for every error but a budget
// breach, so output and error messages are liquid's; BenchmarkRender measures it,
// FuzzFast_MatchesLiquid compares the two, ReadCounters counts the fallbacks by reason and the
// budget breaches (templates/rendermetrics exports them to Prometheus as
// tailor_render_fast_fallbacks_total{reason} and tailor_render_budget_exceeded_total{budget}) and
// TestLiquidVersion_IsTheOneTheFastPathMirrors fails when osteele/liquid moves. A panic inside
// liquid becomes an error, never a crash.
//
// Provenance and Message marshal to JSON with snake_case names (template, version, variant,
// sources, outcome, hash, reason); older rows with Go field names still unmarshal.
//
// This package does not read profiles, store messages or send mail: callers (jobs, cmd/tailor)
// pass a RenderData in and take the Message out. It must not import pipeline, preferences or jobs.
package templates
