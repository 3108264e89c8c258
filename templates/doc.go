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
// Templates are parsed once (Load, FromFiles) and are then immutable; a Renderer is safe for
// concurrent use and shares its content cache across all templates it renders.
//
// Bindings available to Liquid: customer.* (the profile with the manifest defaults applied),
// content.<source> (decoded JSON from the source, or its fallback), campaign.*, variant,
// unsubscribe_url, preferences_url and now. Liquid is never evaluated inside bound values.
//
// Extra filters: money ({{ 1999 | money: "EUR" }} -> €19.99), date with an optional IANA time
// zone ({{ now | date: "%Y-%m-%d %H:%M", "Europe/Paris" }}) and raw (html part only: output as is).
// The {% include %} tag is disabled: a template is self-contained.
//
// This package does not read profiles, store messages or send mail: callers (jobs, cmd/tailor)
// pass a RenderData in and take the Message out. It must not import pipeline, preferences or jobs.
package templates
