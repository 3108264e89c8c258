package money

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/currency"
	"golang.org/x/text/language"
)

// Errors of ParseMajor, wrapped with the input.
var (
	ErrUnknownCurrency = errors.New("money: unknown currency")
	ErrSyntax          = errors.New("money: not a decimal amount")
	ErrTooPrecise      = errors.New("money: more decimal places than the currency has")
	ErrRange           = errors.New("money: amount out of range")
)

// DigitsUnknown is the number of minor-unit digits FormatMinor and Format assume for a code that
// Valid rejects.
const DigitsUnknown = 2

// unit returns the currency of an ISO 4217 code (upper or lower case).
func unit(code string) (currency.Unit, bool) {
	if len(code) != 3 {
		return currency.Unit{}, false
	}
	u, err := currency.ParseISO(code)
	return u, err == nil
}

// Digits returns the number of minor-unit digits of the currency code (2 for EUR, 0 for JPY, 3 for
// KWD); ok is false when code is not a currency x/text knows. Codes are case-insensitive.
func Digits(code string) (digits int, ok bool) {
	u, ok := unit(code)
	if !ok {
		return 0, false
	}
	scale, _ := currency.Standard.Rounding(u)
	return scale, true
}

// Valid reports whether code is an ISO 4217 currency code x/text knows (case-insensitive).
func Valid(code string) bool {
	_, ok := unit(code)
	return ok
}

func digitsOr(code string) int {
	if d, ok := Digits(code); ok {
		return d
	}
	return DigitsUnknown
}

// FormatMinor writes minor units of code as a plain decimal in major units: "19.99" for 1999 EUR,
// "1999" for JPY, "1.999" for KWD, "-0.05" for -5 EUR. There is no grouping and no symbol. A code
// Valid rejects is written with DigitsUnknown digits.
func FormatMinor(minor int64, code string) string {
	neg, whole, frac := split(minor, digitsOr(code))
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(whole)
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// split returns the sign, the integer digits and the digits fractional digits of minor/10^digits.
func split(minor int64, digits int) (neg bool, whole, frac string) {
	abs := uint64(minor)
	if minor < 0 {
		neg, abs = true, uint64(-(minor+1))+1 // no overflow for math.MinInt64
	}
	s := strconv.FormatUint(abs, 10)
	if len(s) <= digits {
		s = strings.Repeat("0", digits-len(s)+1) + s
	}
	return neg, s[:len(s)-digits], s[len(s)-digits:]
}

// ParseMajor reads a decimal amount in major units ("19.99", "19.9", "19", "-3.50") and returns it
// in minor units of code (1999, 1990, 1900, -350 for EUR). It refuses more decimal places than the
// currency has ("19.999" EUR, "5.5" JPY: ErrTooPrecise), anything but an optional leading minus,
// digits and one decimal point (ErrSyntax: no spaces, grouping, exponents or "+"), an unknown
// currency (ErrUnknownCurrency) and amounts that do not fit an int64 of minor units (ErrRange).
func ParseMajor(s, code string) (int64, error) {
	digits, ok := Digits(code)
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownCurrency, code)
	}
	body, neg := strings.CutPrefix(s, "-")
	whole, frac, dot := strings.Cut(body, ".")
	if whole == "" || !allDigits(whole) || !allDigits(frac) || (dot && frac == "") {
		return 0, fmt.Errorf("%w: %q (write e.g. 19.99)", ErrSyntax, s)
	}
	if len(frac) > digits {
		return 0, fmt.Errorf("%w (%q has %d, %s has %d)", ErrTooPrecise, s, len(frac), strings.ToUpper(code), digits)
	}
	n, err := strconv.ParseUint(whole+frac+strings.Repeat("0", digits-len(frac)), 10, 64)
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("%w: %q", ErrRange, s)
	}
	if neg {
		return -int64(n), nil
	}
	return int64(n), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Format formats minor units of code for locale (a BCP 47 tag such as "de-DE", "fr" or "en_GB";
// empty or unknown means English): 1999 EUR is "€19.99" in en, "19,99 €" in de and fr (U+00A0
// before the symbol), "€ 19,99" in nl. It is ParseLocale(locale).Format(minor, code).
func Format(minor int64, code, locale string) string {
	return ParseLocale(locale).Format(minor, code)
}

// pattern is how a language writes an amount: CLDR's standard currency format and number symbols.
type pattern struct {
	decimal, group string
	minGroup       int    // CLDR minimumGroupingDigits: es writes 1234,00 € but 12.345,00 €
	prefix         bool   // the symbol comes before the number
	space          string // between symbol and number ("" lets CLDR's currency spacing decide)
	signAfterSym   bool   // nl: "€ -19,99"
}

const nbsp = "\u00a0"

// patterns are CLDR 44's standard currency formats (latn digits) of the languages Tailor's
// templates are written in. Other languages use en.
var patterns = map[string]*pattern{
	"en": {decimal: ".", group: ",", minGroup: 1, prefix: true},                                  // ¤#,##0.00
	"ja": {decimal: ".", group: ",", minGroup: 1, prefix: true},                                  // ¤#,##0.00
	"de": {decimal: ",", group: ".", minGroup: 1, space: nbsp},                                   // #,##0.00 ¤
	"fr": {decimal: ",", group: "\u202f", minGroup: 1, space: nbsp},                              // #,##0.00 ¤
	"es": {decimal: ",", group: ".", minGroup: 2, space: nbsp},                                   // #,##0.00 ¤
	"it": {decimal: ",", group: ".", minGroup: 1, space: nbsp},                                   // #,##0.00 ¤
	"nl": {decimal: ",", group: ".", minGroup: 1, prefix: true, space: nbsp, signAfterSym: true}, // ¤ #,##0.00;¤ -#,##0.00
	"pt": {decimal: ",", group: ".", minGroup: 1, prefix: true, space: nbsp},                     // ¤ #,##0.00
}

// Locale formats amounts for one locale. The zero Locale is English. A Locale is immutable and
// safe for concurrent use; parse it once (ParseLocale) and reuse it.
type Locale struct {
	d *localeData
}

type localeData struct {
	tag     language.Tag
	pattern *pattern
	last    atomic.Pointer[curFormat] // the last code formatted: most renders use one currency
	formats sync.Map                  // currency code as given -> *curFormat
	nformat atomic.Int64
}

// curFormat is how a locale writes one currency: its digits and what comes before and after the
// number (the symbol and the space between).
type curFormat struct {
	code       string
	digits     int
	head, tail string
}

// formatsMax bounds the currency codes a locale remembers (codes come from data).
const formatsMax = 512

var (
	locales     sync.Map // canonical tag -> *localeData
	localeCount atomic.Int64
	english     = newLocaleData(language.English)
)

// localesMax bounds the cache of parsed locales: tags come from profiles, so an unbounded cache
// could be grown by data. Beyond it a Locale is built each time (correct, slower).
const localesMax = 1024

func newLocaleData(tag language.Tag) *localeData {
	base, _ := tag.Base()
	p := patterns[base.String()]
	if p == nil {
		p = patterns["en"]
	}
	return &localeData{tag: tag, pattern: p}
}

// ParseLocale parses a BCP 47 tag ("de-DE", "de", "pt_BR"); an empty, malformed or unknown tag
// gives English.
func ParseLocale(s string) Locale {
	if s == "" {
		return Locale{english}
	}
	if d, ok := locales.Load(s); ok {
		return Locale{d.(*localeData)}
	}
	tag, err := language.Parse(s)
	if err != nil || tag == language.Und {
		return Locale{english}
	}
	d := newLocaleData(tag)
	if localeCount.Load() < localesMax {
		if prev, loaded := locales.LoadOrStore(s, d); loaded {
			return Locale{prev.(*localeData)}
		}
		localeCount.Add(1)
	}
	return Locale{d}
}

// String returns the locale's BCP 47 tag ("en" for the zero Locale).
func (l Locale) String() string { return l.data().tag.String() }

func (l Locale) data() *localeData {
	if l.d == nil {
		return english
	}
	return l.d
}

// format returns how the locale writes code.
func (d *localeData) format(code string) *curFormat {
	if f := d.last.Load(); f != nil && f.code == code {
		return f
	}
	if f, ok := d.formats.Load(code); ok {
		d.last.Store(f.(*curFormat))
		return f.(*curFormat)
	}
	f := &curFormat{code: code, digits: DigitsUnknown}
	sym := strings.ToUpper(code)
	if u, ok := unit(code); ok {
		f.digits, _ = currency.Standard.Rounding(u)
		sym = symbol(u, d.tag) // CLDR's symbol: "€", "$US" in fr
	}
	if d.pattern.prefix {
		f.head = sym + spacing(d.pattern.space, sym)
	} else {
		f.tail = d.pattern.space + sym
	}
	if d.nformat.Load() < formatsMax {
		if _, loaded := d.formats.LoadOrStore(code, f); !loaded {
			d.nformat.Add(1)
		}
	}
	d.last.Store(f)
	return f
}

// symbol returns CLDR's symbol of u in tag. x/text gives it only to a formatter whose fmt.State
// reports a language (as x/text/message's printer does); langState is such a state, so this
// package does not pull in x/text/message and its catalogs.
func symbol(u currency.Unit, tag language.Tag) string {
	st := &langState{tag: tag}
	currency.Symbol(u).Format(st, 'v')
	return st.b.String()
}

// langState is a fmt.State with a language (x/text's internal format.State).
type langState struct {
	b   strings.Builder
	tag language.Tag
}

func (s *langState) Write(p []byte) (int, error) { return s.b.Write(p) }
func (s *langState) Width() (int, bool)          { return 0, false }
func (s *langState) Precision() (int, bool)      { return 0, false }
func (s *langState) Flag(int) bool               { return false }
func (s *langState) Language() language.Tag      { return s.tag }

// Format formats minor units of code in the locale: CLDR's symbol for the locale, its decimal and
// grouping separators and symbol position. A code Valid rejects is written as the upper-cased code
// with DigitsUnknown digits ("XYZ 12.34" in en).
func (l Locale) Format(minor int64, code string) string {
	d := l.data()
	p, f := d.pattern, d.format(code)
	neg := minor < 0
	var buf [64]byte
	b := buf[:0]
	if neg && !(p.prefix && p.signAfterSym) {
		b = append(b, '-')
	}
	b = append(b, f.head...)
	b = appendNumber(b, p, minor, f.digits, neg && p.prefix && p.signAfterSym)
	b = append(b, f.tail...)
	return string(b)
}

// appendNumber appends |minor| / 10^digits with the pattern's separators, after a minus if sign.
func appendNumber(b []byte, p *pattern, minor int64, digits int, sign bool) []byte {
	if sign {
		b = append(b, '-')
	}
	abs := uint64(minor)
	if minor < 0 {
		abs = uint64(-(minor + 1)) + 1
	}
	// The digits, right to left, at least digits+1 of them (0.05).
	var nb [24]byte
	i := len(nb)
	for abs > 0 || i > len(nb)-digits-1 {
		i--
		nb[i] = byte('0' + abs%10)
		abs /= 10
	}
	whole, frac := nb[i:len(nb)-digits], nb[len(nb)-digits:]
	if len(whole) < 3+p.minGroup {
		b = append(b, whole...)
	} else {
		first := (len(whole)-1)%3 + 1
		b = append(b, whole[:first]...)
		for i := first; i < len(whole); i += 3 {
			b = append(b, p.group...)
			b = append(b, whole[i:i+3]...)
		}
	}
	if len(frac) > 0 {
		b = append(b, p.decimal...)
		b = append(b, frac...)
	}
	return b
}

// spacing is CLDR's currency spacing for a symbol before the number: when the pattern puts nothing
// between them and the symbol ends in a letter ("CHF", "KWD"), a no-break space separates them.
func spacing(space, sym string) string {
	if space != "" {
		return space
	}
	r, _ := utf8.DecodeLastRuneInString(sym)
	if r != utf8.RuneError && !unicode.IsSymbol(r) && !unicode.IsSpace(r) {
		return nbsp
	}
	return ""
}
