package templates

import (
	"errors"
	"fmt"
	"hash/maphash"
	"html"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osteele/liquid"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
	"github.com/osteele/tuesday"
)

// The html part is auto-escaped: before parsing, every {{ output }} gets a final filter that
// HTML-escapes its value unless the value was marked safe by | raw (or comes from a capture
// block, whose content was escaped when it was rendered). osteele/liquid has no autoescape mode,
// and rewriting the output expressions keeps escaping at the one place a value meets the markup.
const (
	captureBlock     = "tailor_capture" // {% capture %} in the html part, which marks its content safe
	autoescapeFilter = "tailor_autoescape"
	autoescapeSuffix = " | " + autoescapeFilter + " "
)

// safeHTML is a string that is output as is in the html part.
type safeHTML string

var (
	plainEngine = sync.OnceValue(func() *liquid.Engine { return newEngine(false) })
	htmlEngine  = sync.OnceValue(func() *liquid.Engine { return newEngine(true) })
)

func newEngine(escapeHTML bool) *liquid.Engine {
	e := liquid.NewEngine()
	// A template is self-contained (it is stored and shipped as one unit), and rendering must
	// never read the worker's file system.
	e.RegisterTag("include", func(render.Context) (string, error) {
		return "", errors.New("the include tag is not supported: templates are self-contained")
	})
	registerFilters(e.RegisterFilter, escapeHTML)
	if escapeHTML {
		e.RegisterBlock(captureBlock, func(ctx render.Context) (string, error) {
			s, err := ctx.InnerString()
			if err != nil {
				return "", err
			}
			ctx.Set(strings.TrimSpace(ctx.TagArgs()), safeHTML(s))
			return "", nil
		})
	}
	return e
}

// registerFilters registers the filters of the html (escapeHTML) or plain parts; the engines and
// the fast path's configuration share it.
func registerFilters(add func(name string, fn any), escapeHTML bool) {
	add("money", moneyFilter)
	add("date", dateFilter)
	if escapeHTML {
		add("raw", rawFilter)
		add(autoescapeFilter, escapeValue)
	} else {
		add("raw", func(v any) any { return v })
	}
}

// autoescape appends the escaping filter to every output expression of src, except inside
// {% raw %} and {% comment %} blocks, and turns capture blocks into tailor_capture blocks (liquid
// does not let an engine redefine capture). Line numbers are preserved.
func autoescape(src string) string {
	var b strings.Builder
	b.Grow(len(src) + len(src)/8)
	depth := 0
	for _, tok := range parser.Scan(src, parser.SourceLoc{}, nil) {
		switch tok.Type {
		case parser.TagTokenType:
			switch tok.Name {
			case "raw", "comment":
				depth++
			case "endraw", "endcomment":
				depth--
			case "capture", "endcapture":
				if depth == 0 {
					b.WriteString(strings.Replace(tok.Source, "capture", captureBlock, 1))
					continue
				}
			}
			b.WriteString(tok.Source)
		case parser.ObjTokenType:
			if depth > 0 {
				b.WriteString(tok.Source)
				continue
			}
			end := len(tok.Source) - len("}}")
			if strings.HasSuffix(tok.Source, "-}}") {
				end--
			}
			b.WriteString(tok.Source[:end])
			b.WriteString(autoescapeSuffix)
			b.WriteString(tok.Source[end:])
		default:
			b.WriteString(tok.Source)
		}
	}
	return b.String()
}

// escapeValue HTML-escapes what Liquid would write for v.
func escapeValue(v any) any {
	switch v := v.(type) {
	case nil:
		return nil
	case safeHTML:
		return string(v)
	case string:
		return html.EscapeString(v)
	case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Time:
		return v
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
		if b, ok := v.([]byte); ok {
			return html.EscapeString(string(b))
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = escapeValue(rv.Index(i).Interface())
		}
		return out
	}
	return html.EscapeString(fmt.Sprint(v))
}

func rawFilter(v any) any {
	switch v := v.(type) {
	case string:
		return safeHTML(v)
	case nil, safeHTML:
		return v
	}
	return v
}

// currencies maps ISO 4217 codes to a symbol and the number of minor-unit digits.
var currencies = map[string]struct {
	symbol string
	digits int
}{
	"EUR": {"€", 2}, "USD": {"$", 2}, "GBP": {"£", 2}, "JPY": {"¥", 0}, "CHF": {"CHF ", 2},
	"CAD": {"CA$", 2}, "AUD": {"A$", 2}, "SEK": {"SEK ", 2}, "NOK": {"NOK ", 2}, "DKK": {"DKK ", 2},
	"PLN": {"PLN ", 2}, "CNY": {"CN¥", 2}, "INR": {"₹", 2}, "BRL": {"R$", 2}, "KRW": {"₩", 0},
}

// moneyFilter formats an amount in minor units: {{ 1999 | money: "EUR" }} -> €19.99. An unknown
// currency is written as its code with two decimals ("XYZ 19.99").
func moneyFilter(amount float64, currency func(string) string) (string, error) {
	return formatMoney(amount, currency("USD")), nil
}

func formatMoney(amount float64, currency string) string {
	code := strings.ToUpper(currency)
	c, ok := currencies[code]
	if !ok {
		c.symbol, c.digits = code+" ", 2
	}
	neg := ""
	if amount < 0 {
		neg, amount = "-", -amount
	}
	minor := int64(math.Round(amount))
	if minor < 0 { // overflow
		if c.digits == 0 {
			return fmt.Sprintf("%s%s%d", neg, c.symbol, minor)
		}
		scale := int64(math.Pow10(c.digits))
		return fmt.Sprintf("%s%s%d.%0*d", neg, c.symbol, minor/scale, c.digits, minor%scale)
	}
	b := make([]byte, 0, 32)
	b = append(b, neg...)
	b = append(b, c.symbol...)
	if c.digits == 0 {
		return string(strconv.AppendInt(b, minor, 10))
	}
	scale := int64(math.Pow10(c.digits))
	b = strconv.AppendInt(b, minor/scale, 10)
	b = append(b, '.')
	frac := strconv.FormatInt(minor%scale, 10)
	for range c.digits - len(frac) {
		b = append(b, '0')
	}
	return string(append(b, frac...))
}

// dateFilter is Liquid's date filter with an optional IANA time zone:
// {{ now | date: "%Y-%m-%d %H:%M", "Europe/Paris" }}.
func dateFilter(t time.Time, format func(string) string, zone func(string) string) (string, error) {
	tz := zone("")
	return formatDate(t, format(dateFormatDefault), tz)
}

// dateFormatDefault is liquid's date filter's default format.
const dateFormatDefault = "%a, %b %d, %y"

func formatDate(t time.Time, format, zone string) (string, error) {
	// A campaign renders a whole batch with one "now": remember recent results (Strftime runs
	// a regexp over the format on every call).
	slot := &dateMemos[maphash.String(dateSeed, format)%uint64(len(dateMemos))]
	if m := slot.Load(); m != nil && m.t == t && m.format == format && m.zone == zone {
		return m.out, nil
	}
	out, err := strftime(t, format, zone)
	if err == nil {
		slot.Store(&dateMemo{t: t, format: format, zone: zone, out: out})
	}
	return out, err
}

type dateMemo struct {
	t            time.Time
	format, zone string
	out          string
}

var (
	dateMemos [64]atomic.Pointer[dateMemo]
	dateSeed  = maphash.MakeSeed()
)

func strftime(t time.Time, format, zone string) (string, error) {
	if zone != "" {
		loc, err := loadLocation(zone)
		if err != nil {
			return "", fmt.Errorf("date: unknown time zone %q (use an IANA name such as Europe/Paris)", zone)
		}
		t = t.In(loc)
	}
	return tuesday.Strftime(format, t)
}

// locations caches time.LoadLocation, which parses the embedded zone database on every call.
var locations sync.Map // zone name -> *time.Location

func loadLocation(name string) (*time.Location, error) {
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, loc)
	return loc, nil
}

// undoRewrite removes autoescape's rewriting from an error message the author will read.
func undoRewrite(msg string) string {
	msg = strings.ReplaceAll(msg, autoescapeSuffix, " ")
	msg = strings.ReplaceAll(msg, strings.TrimSpace(autoescapeSuffix), "")
	return strings.ReplaceAll(msg, captureBlock, "capture")
}
