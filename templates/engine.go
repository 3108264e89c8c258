package templates

import (
	"errors"
	"fmt"
	"hash/maphash"
	"html"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/filters"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
	"github.com/osteele/liquid/tags"
	"github.com/osteele/liquid/values"
	"github.com/osteele/tuesday"

	"github.com/tailor-email/tailor/internal/money"
)

// The html part is auto-escaped: before parsing, every {{ output }} gets a final filter that
// HTML-escapes its value unless the value was marked safe by | raw (or comes from a capture
// block, whose content was escaped when it was rendered). osteele/liquid has no autoescape mode,
// and rewriting the output expressions keeps escaping at the one place a value meets the markup.
//
// The same rewrite (of every part) turns capture blocks into tailor_capture blocks, which bound
// what they capture (liquid does not let an engine redefine capture), and puts a loop tick at the
// top of every for and tablerow body (see budget.go). Line numbers are preserved.
const (
	captureBlock     = "tailor_capture"
	autoescapeFilter = "tailor_autoescape"
	autoescapeSuffix = " | " + autoescapeFilter + " "
)

// safeHTML is a string that is output as is in the html part.
type safeHTML string

// config is the grammar and filters of one kind of part (html or plain) for one env.
type config struct {
	render.Config
	expr expressions.Config
}

// env is how a Renderer renders for one locale: liquid's configurations of the html and plain
// parts, whose filters have the renderer's size budgets and the locale bound in. Parsed trees do
// not depend on it: a part is compiled once (with grammar) and rendered with any env.
type env struct {
	plain, html *config
	locale      money.Locale
	name        string // the locale as the Renderer was asked for it
}

func (e *env) config(html bool) *config {
	if html {
		return e.html
	}
	return e.plain
}

// grammar compiles every part: the tags and blocks of the html (true) and plain parts, without
// filters, which liquid looks up when an expression is evaluated, in the env it renders with.
var grammar = sync.OnceValue(func() map[bool]*config {
	return map[bool]*config{false: newConfig(false, nil, money.Locale{}), true: newConfig(true, nil, money.Locale{})}
})

func newEnv(lim Budgets, loc money.Locale) *env {
	return &env{plain: newConfig(false, &lim, loc), html: newConfig(true, &lim, loc), locale: loc}
}

// newConfig returns the configuration of html or plain parts; with lim nil it has no filters.
func newConfig(escapeHTML bool, lim *Budgets, loc money.Locale) *config {
	cfg := render.NewConfig()
	if lim != nil {
		filters.AddStandardFilters(&cfg)
		guardFilters(cfg.AddFilter, lim)
		registerFilters(cfg.AddFilter, escapeHTML, loc)
	}
	tags.AddStandardTags(cfg)
	// A template is self-contained (it is stored and shipped as one unit), and rendering must
	// never read the worker's file system.
	cfg.AddTag("include", func(string) (func(io.Writer, render.Context) error, error) {
		return func(io.Writer, render.Context) error {
			return errors.New("the include tag is not supported: templates are self-contained")
		}, nil
	})
	cfg.AddTag("assign", assignTag)
	cfg.AddTag(loopTick, loopTickTag)
	cfg.AddBlock(captureBlock).Compiler(captureCompiler(escapeHTML))
	return &config{Config: cfg, expr: cfg.Config.Config}
}

// assignTag is liquid's assign with the budget: the value's size is checked before it is bound.
func assignTag(args string) (func(io.Writer, render.Context) error, error) {
	stmt, err := expressions.ParseStatement(expressions.AssignStatementSelector, args)
	if err != nil {
		return nil, err
	}
	return func(_ io.Writer, ctx render.Context) error {
		value, err := ctx.Evaluate(stmt.Assignment.ValueFn)
		if err != nil {
			return err
		}
		if b := budgetOf(ctx); b != nil {
			if err := b.value(value, 0); err != nil {
				return err
			}
			if err := b.step(0); err != nil {
				return err
			}
		}
		ctx.Set(stmt.Assignment.Variable, value)
		return nil
	}, nil
}

// captureCompiler is liquid's capture rendering into a limitWriter; in the html part the content
// is marked safe (it was escaped as it was rendered) and, as liquid's custom blocks do, the block
// writes its empty output, which flushes.
func captureCompiler(escapeHTML bool) render.BlockCompiler {
	return func(node render.BlockNode) (func(io.Writer, render.Context) error, error) {
		name := strings.TrimSpace(node.Args)
		return func(w io.Writer, ctx render.Context) error {
			b := budgetOf(ctx)
			lw := &limitWriter{limit: math.MaxInt, kind: BudgetString, b: b}
			if b != nil {
				lw.limit = b.lim.String
			}
			if err := ctx.RenderChildren(lw); err != nil {
				return err
			}
			if !escapeHTML {
				ctx.Set(name, string(lw.buf))
				return nil
			}
			ctx.Set(name, safeHTML(lw.buf))
			_, err := io.WriteString(w, "")
			return err
		}, nil
	}
}

// registerFilters registers Tailor's filters of the html (escapeHTML) or plain parts.
func registerFilters(add func(name string, fn any), escapeHTML bool, loc money.Locale) {
	add("money", func(amount float64, currency func(string) string, locale func(string) string) (string, error) {
		return formatMoney(amount, currency("USD"), localeOr(locale(""), loc))
	})
	add("date", dateFilter)
	if escapeHTML {
		add("raw", rawFilter)
		add(autoescapeFilter, escapeValue)
	} else {
		add("raw", func(v any) any { return v })
	}
}

func localeOr(s string, def money.Locale) money.Locale {
	if s == "" {
		return def
	}
	return money.ParseLocale(s)
}

// rewrite prepares a part's source for parsing: in the html part every output gets the escaping
// filter; in every part capture becomes tailor_capture and each loop body starts with a tick. It
// follows liquid's parser through raw and comment blocks, so nothing inside them changes.
func rewrite(src string, line int, escapeHTML bool) string {
	var b strings.Builder
	b.Grow(len(src) + len(src)/8)
	inRaw, inComment := false, false
	for _, tok := range parser.Scan(src, parser.SourceLoc{LineNo: line}, nil) {
		switch {
		case inComment:
			inComment = !(tok.Type == parser.TagTokenType && tok.Name == "endcomment")
			b.WriteString(tok.Source)
		case inRaw:
			inRaw = !(tok.Type == parser.TagTokenType && tok.Name == "endraw")
			b.WriteString(tok.Source)
		case tok.Type == parser.TagTokenType:
			switch tok.Name {
			case "comment":
				inComment = true
			case "raw":
				inRaw = true
			case "capture", "endcapture":
				b.WriteString(strings.Replace(tok.Source, "capture", captureBlock, 1))
				continue
			case "for", "tablerow":
				b.WriteString(tok.Source)
				fmt.Fprintf(&b, "{%% %s %d %%}", loopTick, tok.SourceLoc.LineNo)
				continue
			}
			b.WriteString(tok.Source)
		case tok.Type == parser.ObjTokenType && escapeHTML:
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

// undoRewrite removes rewrite's additions from an error message the author will read.
func undoRewrite(msg string) string {
	msg = strings.ReplaceAll(msg, autoescapeSuffix, " ")
	msg = strings.ReplaceAll(msg, strings.TrimSpace(autoescapeSuffix), "")
	return strings.ReplaceAll(msg, captureBlock, "capture")
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

// formatMoney formats an amount in minor units of currency for loc, with internal/money:
// {{ 1999 | money: "EUR" }} is €19.99 in en and 19,99 € in de.
func formatMoney(amount float64, currency string, loc money.Locale) (string, error) {
	r := math.Round(amount)
	if math.IsNaN(r) || r >= math.MaxInt64 || r < math.MinInt64 {
		return "", fmt.Errorf("money: amount %v is out of range", amount)
	}
	return loc.Format(int64(r), currency), nil
}

// standardFilters are liquid's standard filter functions by name.
var standardFilters = sync.OnceValue(func() map[string]any {
	m := filterMap{}
	filters.AddStandardFilters(m)
	m["uniq"] = uniqFilter
	return m
})

type filterMap map[string]any

func (m filterMap) AddFilter(name string, fn any) { m[name] = fn }

// unguarded are the standard filters that cannot build a large string or array.
var unguarded = map[string]bool{
	"abs": true, "ceil": true, "floor": true, "modulo": true, "minus": true, "plus": true, "times": true,
	"divided_by": true, "round": true, "size": true, "type": true, "default": true, "date": true,
}

// guardFilters registers liquid's standard filters wrapped with the size budgets: an array or
// range argument over lim.Items is refused before liquid converts it, append, prepend, replace,
// join, concat and split compute their result's size before building it, every result is
// checked, and a filter that panics on its input fails instead.
func guardFilters(add func(name string, fn any), lim *Budgets) {
	for _, g := range guards() {
		add(g.name, g.wrap(lim))
	}
}

// guarded is a standard filter to wrap.
type guarded struct {
	name string
	fn   reflect.Value
	pre  preCheck
}

// guards are the standard filters guardFilters wraps, shared by every config.
var guards = sync.OnceValue(func() []*guarded {
	var gs []*guarded
	for name, fn := range standardFilters() {
		if !unguarded[name] {
			gs = append(gs, &guarded{name: name, fn: reflect.ValueOf(fn), pre: preChecks[name]})
		}
	}
	return gs
})

type preCheck func(lim Budgets, recv any, args []any) *BudgetError

// guard wraps the standard filter name (fn) with the budgets lim.
func guard(name string, fn any, lim Budgets, pre preCheck) func(any, ...any) (any, error) {
	return (&guarded{name: name, fn: reflect.ValueOf(fn), pre: pre}).wrap(&lim)
}

func (g *guarded) wrap(lim *Budgets) func(any, ...any) (any, error) {
	return func(recv any, args ...any) (out any, err error) {
		all := append([]any{recv}, args...)
		for _, a := range all {
			if _, ok := a.(string); !ok {
				if be := sizeOf(a, math.MaxInt, lim.Items); be != nil {
					return nil, be
				}
			}
		}
		if g.pre != nil {
			if be := g.pre(*lim, recv, args); be != nil {
				return nil, be
			}
		}
		defer func() {
			if p := recover(); p != nil {
				if te, ok := p.(values.TypeError); ok {
					panic(te) // liquid turns it into its own error message
				}
				out, err = nil, fmt.Errorf("%s: %v", g.name, p)
			}
		}()
		out, err = values.Call(g.fn, all)
		if err != nil {
			return nil, err
		}
		if be := sizeOf(out, lim.String, lim.Items); be != nil {
			return nil, be
		}
		return out, nil
	}
}

// preChecks compute the size of a result before a filter builds it. They apply when the
// arguments are strings (others are converted by liquid, and their results are checked after).
var preChecks = map[string]preCheck{
	"append":  func(lim Budgets, recv any, args []any) *BudgetError { return sumCheck(lim, recv, arg(args, 0)) },
	"prepend": func(lim Budgets, recv any, args []any) *BudgetError { return sumCheck(lim, recv, arg(args, 0)) },
	"replace": func(lim Budgets, recv any, args []any) *BudgetError {
		s, ok1 := recv.(string)
		old, ok2 := arg(args, 0).(string)
		repl, ok3 := arg(args, 1).(string)
		if !ok1 || !ok2 || !ok3 || len(repl) <= len(old) {
			return nil
		}
		n := strings.Count(s, old)
		if n > 0 && (len(repl)-len(old)) > (lim.String-len(s))/n {
			return &BudgetError{Budget: BudgetString, Limit: int64(lim.String)}
		}
		return nil
	},
	"join": func(lim Budgets, recv any, args []any) *BudgetError {
		n := length(recv)
		sep := 1 // liquid's default separator is " "
		if s, ok := arg(args, 0).(string); ok {
			sep = len(s)
		}
		if n > 1 && sep > lim.String/(n-1) {
			return &BudgetError{Budget: BudgetString, Limit: int64(lim.String)}
		}
		total := 0
		for i := range n {
			switch v := index(recv, i).(type) {
			case nil:
			case string:
				total += len(v) + sep
			default:
				total += len(fmt.Sprint(v)) + sep
			}
			if total > lim.String+sep {
				return &BudgetError{Budget: BudgetString, Limit: int64(lim.String)}
			}
		}
		return nil
	},
	"concat": func(lim Budgets, recv any, args []any) *BudgetError {
		if length(recv)+length(arg(args, 0)) > lim.Items {
			return &BudgetError{Budget: BudgetItems, Limit: int64(lim.Items)}
		}
		return nil
	},
	"split": func(lim Budgets, recv any, args []any) *BudgetError {
		s, ok1 := recv.(string)
		sep, ok2 := arg(args, 0).(string)
		if !ok1 || !ok2 {
			return nil
		}
		var n int
		switch sep {
		case "":
			n = utf8.RuneCountInString(s)
		case " ": // liquid splits on runs of white space
			n = spaceRuns(s) + 1
		default:
			n = strings.Count(s, sep) + 1
		}
		if n > lim.Items {
			return &BudgetError{Budget: BudgetItems, Limit: int64(lim.Items)}
		}
		return nil
	},
}

// spaceRuns counts the runs of [[:space:]] in s.
func spaceRuns(s string) int {
	n, in := 0, false
	for i := 0; i < len(s); i++ {
		sp := s[i] == ' ' || s[i] >= '\t' && s[i] <= '\r'
		if sp && !in {
			n++
		}
		in = sp
	}
	return n
}

func arg(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

// length is the number of items of an array, slice or range (0 for anything else).
func length(v any) int {
	if it, ok := v.(iterable); ok {
		return it.Len()
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
		return rv.Len()
	}
	return 0
}

// index is item i of what length measured.
func index(v any, i int) any {
	if it, ok := v.(iterable); ok {
		return it.Index(i)
	}
	return reflect.ValueOf(v).Index(i).Interface()
}

func sumCheck(lim Budgets, a, b any) *BudgetError {
	s, ok1 := a.(string)
	t, ok2 := b.(string)
	if ok1 && ok2 && len(s) > lim.String-len(t) {
		return &BudgetError{Budget: BudgetString, Limit: int64(lim.String)}
	}
	return nil
}

// uniqFilter is liquid's uniq without its quadratic scan: liquid compares each item that is not a
// number or bool with every item kept so far, which a 100 000-item array turns into billions of
// comparisons. Items are bucketed by a hash that equal items share, then compared as liquid does.
// It also does not panic on nil items.
func uniqFilter(a []any) (result []any) {
	seenMap := map[any]bool{}
	buckets := map[uint64][]any{}
	for _, item := range a {
		if item == nil {
			if !seenMap[nil] {
				seenMap[nil] = true
				result = append(result, nil)
			}
			continue
		}
		if k := reflect.TypeOf(item).Kind(); k < reflect.Array || k == reflect.Ptr || k == reflect.UnsafePointer {
			if !seenMap[item] {
				seenMap[item] = true
				result = append(result, item)
			}
			continue
		}
		h := itemHash(item)
		dup := false
		for _, other := range buckets[h] {
			if eqItems(item, other) {
				dup = true
				break
			}
		}
		if !dup {
			buckets[h] = append(buckets[h], item)
			result = append(result, item)
		}
	}
	return result
}

var uniqSeed = maphash.MakeSeed()

// itemHash is equal for items eqItems finds equal: it hashes the dynamic type and, for strings
// and JSON shapes (down to a depth of 4), the content (a float's sign of zero ignored, as == does);
// other types hash by type only.
func itemHash(v any) uint64 {
	var h maphash.Hash
	h.SetSeed(uniqSeed)
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		h.WriteString(reflect.TypeOf(v).String())
		if depth > 4 {
			return
		}
		switch x := v.(type) {
		case string:
			h.WriteString(x)
		case float64:
			if x == 0 {
				x = 0
			}
			h.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
		case bool, int:
			h.WriteString(fmt.Sprint(x))
		case []any:
			h.WriteString(strconv.Itoa(len(x)))
			for _, e := range x {
				if e != nil {
					walk(e, depth+1)
				}
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				h.WriteString(k)
				if e := x[k]; e != nil {
					walk(e, depth+1)
				}
			}
		}
	}
	walk(v, 0)
	return h.Sum64()
}

// eqItems is liquid's uniq equality.
func eqItems(a, b any) bool {
	if reflect.TypeOf(a).Comparable() && reflect.TypeOf(b).Comparable() {
		return a == b
	}
	return reflect.DeepEqual(a, b)
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
