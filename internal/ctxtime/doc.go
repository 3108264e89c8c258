// Package ctxtime holds the one waiting primitive Tailor's loops share: a sleep that ends early,
// with the context's error, when the context is done (STYLE.md: no sleep that ignores ctx).
//
// It imports nothing of Tailor.
package ctxtime
