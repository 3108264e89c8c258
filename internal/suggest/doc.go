// Package suggest finds the likely intended word for a typo, so error messages can say
// `unknown field "contry" (did you mean "country"?)`.
//
// It imports nothing of Tailor.
package suggest
