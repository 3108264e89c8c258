// Package web is the preference center's HTTP surface over package preferences:
//
//	POST /v1/webhooks/preferences   change sets signed the Standard Webhooks way (Verifier:
//	                                several active whsec_ secrets, 5-minute tolerance,
//	                                constant-time compare); 64 KiB at most
//	GET  /preferences/{token}       the hosted page: html/template, no JavaScript, labelled
//	                                fieldsets, keyboard and contrast friendly, in en, de or fr
//	                                by the customer's locale (else Accept-Language)
//	POST /preferences/{token}       its form: a form key bound to the token, same-origin only
//	                                (http.CrossOriginProtection)
//	GET  /unsubscribe/{token}       the page with a confirmation button (mail scanners follow
//	                                links: a GET never unsubscribes)
//	POST /unsubscribe/{token}       RFC 8058 one-click: exactly List-Unsubscribe=One-Click
//
// It maps the domain's errors to status codes and pages, dead-letters refused webhooks (source
// webhook) and one-click bodies (source one_click), and counts outcomes. It holds no business
// rules and no SQL.
package web
