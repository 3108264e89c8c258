package money

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDigits_FromCLDR(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   string
		digits int
		ok     bool
	}{
		{"KWD", 3, true}, {"BHD", 3, true}, {"JPY", 0, true}, {"CLP", 0, true}, {"ISK", 0, true},
		{"EUR", 2, true}, {"USD", 2, true}, {"eur", 2, true}, {"CLF", 4, true},
		{"XYZ", 0, false}, {"", 0, false}, {"EURO", 0, false}, {"€", 0, false},
	}
	for _, tt := range tests {
		d, ok := Digits(tt.code)
		require.Equal(t, tt.ok, ok, tt.code)
		require.Equal(t, tt.digits, d, tt.code)
		require.Equal(t, tt.ok, Valid(tt.code), tt.code)
	}
}

func TestFormatMinor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		minor int64
		code  string
		want  string
	}{
		{1999, "EUR", "19.99"}, {1999, "USD", "19.99"}, {1999, "JPY", "1999"}, {1999, "KWD", "1.999"},
		{1999, "BHD", "1.999"}, {1999, "CLP", "1999"}, {1999, "ISK", "1999"}, {5, "EUR", "0.05"},
		{-5, "EUR", "-0.05"}, {-1999, "KWD", "-1.999"}, {0, "EUR", "0.00"}, {0, "JPY", "0"},
		{1234, "XYZ", "12.34"}, {math.MinInt64, "EUR", "-92233720368547758.08"},
		{math.MaxInt64, "JPY", "9223372036854775807"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, FormatMinor(tt.minor, tt.code), "%d %s", tt.minor, tt.code)
	}
}

func TestParseMajor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s, code string
		want    int64
		err     error
	}{
		{"19.99", "EUR", 1999, nil}, {"19.9", "EUR", 1990, nil}, {"19", "EUR", 1900, nil},
		{"0.05", "EUR", 5, nil}, {"-3.50", "EUR", -350, nil}, {"1999", "JPY", 1999, nil},
		{"1.999", "KWD", 1999, nil}, {"1.5", "BHD", 1500, nil}, {"1999", "CLP", 1999, nil},
		{"19.99", "usd", 1999, nil}, {"92233720368547758.07", "EUR", math.MaxInt64, nil},
		{"19.999", "EUR", 0, ErrTooPrecise}, {"5.5", "JPY", 0, ErrTooPrecise}, {"1.9999", "KWD", 0, ErrTooPrecise},
		{"", "EUR", 0, ErrSyntax}, {"19.", "EUR", 0, ErrSyntax}, {".5", "EUR", 0, ErrSyntax},
		{"1,000.00", "EUR", 0, ErrSyntax}, {" 19.99", "EUR", 0, ErrSyntax}, {"+1", "EUR", 0, ErrSyntax},
		{"1e3", "EUR", 0, ErrSyntax}, {"--1", "EUR", 0, ErrSyntax}, {"1.2.3", "EUR", 0, ErrSyntax},
		{"92233720368547758.08", "EUR", 0, ErrRange}, {"99999999999999999999", "JPY", 0, ErrRange},
		{"19.99", "XYZ", 0, ErrUnknownCurrency},
	}
	for _, tt := range tests {
		got, err := ParseMajor(tt.s, tt.code)
		if tt.err != nil {
			require.ErrorIs(t, err, tt.err, "%q %s", tt.s, tt.code)
			continue
		}
		require.NoError(t, err, "%q %s", tt.s, tt.code)
		require.Equal(t, tt.want, got, "%q %s", tt.s, tt.code)
		require.Equal(t, tt.want, mustParse(t, FormatMinor(got, tt.code), tt.code), "FormatMinor round-trips")
	}
}

func mustParse(t *testing.T, s, code string) int64 {
	t.Helper()
	n, err := ParseMajor(s, code)
	require.NoError(t, err)
	return n
}

// TestFormat_Locales is the table of currencies whose minor units differ (3, 0 and 2 digits) in
// the three locales most Tailor templates use. \u00a0 is a no-break space, \u202f a narrow one.
func TestFormat_Locales(t *testing.T) {
	t.Parallel()
	tests := []struct {
		minor  int64
		code   string
		en     string
		de, fr string
	}{
		{1999, "EUR", "€19.99", "19,99\u00a0€", "19,99\u00a0€"},
		{1999, "USD", "$19.99", "19,99\u00a0$", "19,99\u00a0$US"},
		{1999, "JPY", "¥1,999", "1.999\u00a0¥", "1\u202f999\u00a0JPY"},
		{1999, "KWD", "KWD\u00a01.999", "1,999\u00a0KWD", "1,999\u00a0KWD"},
		{1999, "BHD", "BHD\u00a01.999", "1,999\u00a0BHD", "1,999\u00a0BHD"},
		{1999, "CLP", "CLP\u00a01,999", "1.999\u00a0CLP", "1\u202f999\u00a0$CL"},
		{1999, "ISK", "ISK\u00a01,999", "1.999\u00a0ISK", "1\u202f999\u00a0ISK"},
		{123456789, "EUR", "€1,234,567.89", "1.234.567,89\u00a0€", "1\u202f234\u202f567,89\u00a0€"},
		{-250, "EUR", "-€2.50", "-2,50\u00a0€", "-2,50\u00a0€"},
		{0, "KWD", "KWD\u00a00.000", "0,000\u00a0KWD", "0,000\u00a0KWD"},
		{1234, "XYZ", "XYZ\u00a012.34", "12,34\u00a0XYZ", "12,34\u00a0XYZ"},
	}
	for _, tt := range tests {
		for _, c := range []struct{ locale, want string }{{"en", tt.en}, {"de", tt.de}, {"fr", tt.fr}} {
			require.Equal(t, c.want, Format(tt.minor, tt.code, c.locale), "%d %s in %s", tt.minor, tt.code, c.locale)
		}
	}
}

func TestFormat_OtherLanguagesAndTags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		minor        int64
		code, locale string
		want         string
	}{
		{1999, "EUR", "de-DE", "19,99\u00a0€"},
		{1999, "EUR", "de_AT", "19,99\u00a0€"},
		{1999, "EUR", "es", "19,99\u00a0€"},
		{123456, "EUR", "es", "1234,56\u00a0€"}, // CLDR es groups only from five integer digits
		{1234567, "EUR", "es", "12.345,67\u00a0€"},
		{1999, "EUR", "it", "19,99\u00a0€"},
		{1999, "EUR", "nl", "€\u00a019,99"},
		{-1999, "EUR", "nl", "€\u00a0-19,99"},
		{1999, "BRL", "pt-BR", "R$\u00a019,99"},
		{-1999, "EUR", "pt", "-€\u00a019,99"},
		{199900, "JPY", "ja", "￥199,900"},
		{1999, "CAD", "en-CA", "$19.99"},
		{1999, "CAD", "en", "CA$19.99"},
		{1999, "CHF", "en", "CHF\u00a019.99"},
		{1999, "EUR", "", "€19.99"},
		{1999, "EUR", "not a tag", "€19.99"},
		{1999, "EUR", "sv", "€19.99"}, // no pattern for sv: English
		{1999, "eur", "en", "€19.99"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Format(tt.minor, tt.code, tt.locale), "%d %s in %q", tt.minor, tt.code, tt.locale)
	}
	require.Equal(t, "en", Locale{}.String())
	require.Equal(t, "€19.99", Locale{}.Format(1999, "EUR"), "the zero Locale is English")
	require.Equal(t, "de-DE", ParseLocale("de_DE").String())
}

func TestParseLocale_BoundsItsCache(t *testing.T) {
	t.Parallel()
	for i := range 2 * localesMax {
		l := ParseLocale(fmt.Sprintf("de-x-p%d", i))
		require.Equal(t, "19,99\u00a0€", l.Format(1999, "EUR"))
	}
	require.LessOrEqual(t, localeCount.Load(), int64(localesMax))
}

func ExampleFormat() {
	fmt.Println(Format(1999, "EUR", "en"))
	fmt.Printf("%q\n", Format(1999, "KWD", "en"))
	fmt.Printf("%q\n", Format(1999, "EUR", "de-DE"))
	// Output:
	// €19.99
	// "KWD\u00a01.999"
	// "19,99\u00a0€"
}

func ExampleParseMajor() {
	n, err := ParseMajor("19.99", "EUR")
	fmt.Println(n, err)
	_, err = ParseMajor("19.999", "EUR")
	fmt.Println(err)
	// Output:
	// 1999 <nil>
	// money: more decimal places than the currency has ("19.999" has 3, EUR has 2)
}
