// Package money owns how Tailor reads and writes amounts of money: integer minor units of an
// ISO 4217 currency (1999 EUR cents is €19.99), converted to and from decimal strings and
// formatted for a recipient's locale.
//
// Minor-unit digits come from CLDR's currency data as golang.org/x/text/currency bundles it
// (currency.ParseISO, currency.Standard.Rounding), never from a table kept here. They follow ISO
// 4217 except where CLDR records that the minor unit is not used in practice (IQD, IRR, COP, LAK
// and a few others have 0 digits); codes newer than x/text's CLDR data (e.g. MRU) are unknown.
//
// Locale formatting (Format, Locale.Format) takes the currency symbol for the locale from the same
// CLDR data and the number pattern from a small table of current CLDR patterns for en, de, fr, es,
// it, nl, pt and ja (x/text has no currency patterns, and its separators predate CLDR 34: French
// now groups with U+202F). Other languages are formatted as English; a region refines the symbol
// (en-CA writes CAD as "$") but not the pattern (de-CH is formatted as de).
//
// Amounts are int64 minor units throughout: binary floating point cannot hold money exactly.
// This package does no I/O and keeps no state beyond caches of CLDR lookups; every function is
// safe for concurrent use. It must not import other Tailor packages.
package money
