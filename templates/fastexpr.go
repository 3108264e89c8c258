package templates

import (
	"html"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/values"
)

// fastExpr is an expression of the fast path. Most outputs in emails have the shape
// "a.b.c | filter: arg, arg" with literal or path arguments and a handful of filters; those are
// evaluated natively (native != nil), with liquid's conversions, which avoids liquid's
// reflective filter calls. Every other expression is liquid's.
type fastExpr struct {
	liquid expressions.Expression
	native *nativeExpr
	not    bool // expressions.Not: unless
}

type nativeExpr struct {
	recv    operand
	filters []nativeCall
	cmp     string  // "operand cmp operand" (==, !=, <, >, <=, >=): a comparison, no filters
	rhs     operand // its right operand
}

type nativeCall struct {
	fn    nativeFilter
	args  []operand
	grows bool // the result may be longer than the input by a factor (escape, url_encode)
}

// operand is a literal or a variable path.
type operand struct {
	path    []string // nil for a literal
	literal any
}

// nativeFilter computes a filter exactly as liquid would call its Go function; ok is false when
// liquid would fail or convert in a way the fast path does not reproduce.
type nativeFilter func(r *fastRun, recv any, args []any) (out any, ok bool)

func (e *fastExpr) eval(r *fastRun) (any, error) {
	v, err := e.value(r)
	if e.not && err == nil {
		return v == nil || v == false, nil
	}
	return v, err
}

func (e *fastExpr) value(r *fastRun) (any, error) {
	if e.native == nil {
		if r.ctx == nil {
			r.ctx = expressions.NewContext(r.bindings, r.cfg.expr)
		}
		return e.liquid.Evaluate(r.ctx)
	}
	v := e.native.recv.eval(r.bindings)
	if e.native.cmp != "" {
		return compare(e.native.cmp, v, e.native.rhs.eval(r.bindings)), nil
	}
	for _, f := range e.native.filters {
		args := r.args[:0]
		for _, a := range f.args {
			args = append(args, a.eval(r.bindings))
		}
		r.args = args
		out, ok := f.fn(r, v, args)
		clear(args)
		if !ok {
			return nil, errSlowPath
		}
		if s, ok := out.(string); ok && f.grows && len(s) > r.b.lim.String { // each url_encode of a chain triples
			return nil, &BudgetError{Budget: BudgetString, Limit: int64(r.b.lim.String)}
		}
		v = out
	}
	return v, nil
}

// eval looks a path up as liquid does (Context.Get, then Value.PropertyValue per segment).
func (o operand) eval(bindings map[string]any) any {
	if o.path == nil {
		return o.literal
	}
	root := bindings[o.path[0]]
	s, ok := root.(*loopState)
	if !ok || len(o.path) == 1 {
		return o.walk(normalize(values.ToLiquid(root)), o.path[1:])
	}
	return o.walk(s.field(o.path[1]), o.path[2:])
}

// lookup is what liquid's map value finds at name in m ("size": its length, unless a key).
func lookup(m map[string]any, name string) any {
	if x, ok := m[name]; ok {
		return normalize(x)
	} else if name == "size" {
		return len(m)
	}
	return nil
}

// walk looks the rest of a path up from v.
func (o operand) walk(v any, rest []string) any {
	for _, name := range rest {
		switch m := v.(type) {
		case map[string]any:
			v = lookup(m, name)
		case nil:
			return nil
		default:
			v = values.ValueOf(v).PropertyValue(values.ValueOf(name)).Interface()
		}
	}
	return v
}

// normalize returns values.ValueOf(v).Interface() without the allocation for the JSON shapes.
func normalize(v any) any {
	switch v.(type) {
	case nil, string, bool, float64, int, map[string]any, []any, time.Time, safeHTML:
		return v
	}
	return values.ValueOf(v).Interface()
}

// compileExpr compiles src natively when it has the simple shape, else with liquid.
func compileExpr(src string) (*fastExpr, error) {
	if n := parseNative(src); n != nil {
		return &fastExpr{native: n}, nil
	}
	e, err := expressions.Parse(src)
	if err != nil {
		return nil, err
	}
	return &fastExpr{liquid: e}, nil
}

// keywords of liquid's expression lexer: an identifier spelled like one is left to liquid.
var keywords = map[string]bool{
	"and": true, "or": true, "contains": true, "in": true, "true": true, "false": true, "nil": true,
	"null": true, "empty": true, "blank": true, "for": true, "assign": true, "cycle": true,
	"when": true, "limit": true, "offset": true, "reversed": true, "cols": true, "not": true,
}

// parseNative parses "operand ( | filter ( : operand ( , operand )* )? )*" or returns nil.
func parseNative(src string) *nativeExpr {
	p := nativeParser{s: src}
	recv, ok := p.operand()
	if !ok {
		return nil
	}
	n := &nativeExpr{recv: recv}
	p.space()
	if op := p.comparison(); op != "" {
		rhs, ok := p.operand()
		p.space()
		if !ok || !p.done() {
			return nil
		}
		n.cmp, n.rhs = op, rhs
		return n
	}
	for {
		p.space()
		if p.done() {
			return n
		}
		if !p.eat('|') {
			return nil
		}
		p.space()
		name := p.ident()
		fn := nativeFilters[name]
		if fn == nil {
			return nil
		}
		call := nativeCall{fn: fn, grows: name == "escape" || name == "url_encode"}
		p.space()
		if p.eat(':') {
			for {
				a, ok := p.operand()
				if !ok {
					return nil
				}
				call.args = append(call.args, a)
				p.space()
				if !p.eat(',') {
					break
				}
			}
		}
		if len(call.args) > 4 {
			return nil
		}
		n.filters = append(n.filters, call)
	}
}

// compare is liquid's comparison of two values (its expression grammar's rel rule).
func compare(op string, a, b any) bool {
	va, vb := values.ValueOf(a), values.ValueOf(b)
	switch op {
	case "==":
		return va.Equal(vb)
	case "!=":
		return !va.Equal(vb)
	case "<":
		return va.Less(vb)
	case ">":
		return vb.Less(va)
	case "<=":
		return va.Less(vb) || va.Equal(vb)
	default: // ">="
		return vb.Less(va) || va.Equal(vb)
	}
}

// comparison reads a comparison operator, or returns "" (and reads nothing). "<>", liquid's
// other spelling of !=, is left to liquid.
func (p *nativeParser) comparison() string {
	rest := p.s[p.i:]
	for _, op := range [...]string{"==", "!=", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(rest, op) && !strings.HasPrefix(rest, "<>") {
			p.i += len(op)
			return op
		}
	}
	return ""
}

type nativeParser struct {
	s string
	i int
}

func (p *nativeParser) done() bool { return p.i >= len(p.s) }

func (p *nativeParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *nativeParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *nativeParser) ident() string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || p.i > start && '0' <= c && c <= '9' {
			p.i++
			continue
		}
		break
	}
	id := p.s[start:p.i]
	if p.i < len(p.s) && (p.s[p.i] == '-' || p.s[p.i] == '?') || keywords[id] {
		return "" // liquid allows these in names; leave them to it
	}
	return id
}

func (p *nativeParser) operand() (operand, bool) {
	p.space()
	if p.done() {
		return operand{}, false
	}
	switch c := p.s[p.i]; {
	case c == '"' || c == '\'':
		end := strings.IndexByte(p.s[p.i+1:], c)
		if end < 0 {
			return operand{}, false
		}
		lit := p.s[p.i+1 : p.i+1+end]
		if strings.ContainsAny(lit, "\\\n") {
			return operand{}, false
		}
		p.i += end + 2
		return operand{literal: lit}, true
	case '0' <= c && c <= '9':
		start := p.i
		for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i < len(p.s) && (p.s[p.i] == '.' || isIdentByte(p.s[p.i])) {
			return operand{}, false // floats, ranges and odd tokens: liquid's
		}
		n, err := strconv.Atoi(p.s[start:p.i])
		if err != nil || p.i-start > 9 {
			return operand{}, false
		}
		return operand{literal: n}, true
	}
	var path []string
	for {
		id := p.ident()
		if id == "" {
			return operand{}, false
		}
		path = append(path, id)
		if !p.eat('.') {
			break
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == '[' || p.s[p.i] == '.') {
		return operand{}, false
	}
	return operand{path: path}, true
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

var (
	stringType = reflect.TypeFor[string]()
	floatType  = reflect.TypeFor[float64]()
	timeType   = reflect.TypeFor[time.Time]()
)

// param converts a filter argument for a parameter of type typ as liquid's values.Call does: a
// missing or nil argument is the zero value, anything else goes through values.Convert.
func param[T any](args []any, i int, typ reflect.Type) (T, bool) {
	var zero T
	if i >= len(args) || args[i] == nil {
		return zero, true
	}
	return convert[T](args[i], typ)
}

// convert is values.Convert(v, typ) with shortcuts for strings (which Convert formats with
// fmt.Sprint) and ints.
func convert[T any](v any, typ reflect.Type) (T, bool) {
	if typ == stringType {
		switch x := v.(type) {
		case string:
			return any(x).(T), true
		case int:
			return any(strconv.Itoa(x)).(T), true
		}
	}
	var zero T
	v, err := values.Convert(v, typ)
	if err != nil {
		return zero, false
	}
	t, ok := v.(T)
	return t, ok
}

// funcParam is a parameter of function type (func(string) string): liquid passes a function that
// converts the argument when called, even a nil one, or returns the filter's default.
func funcParam(args []any, i int, def string) (string, bool) {
	if i >= len(args) {
		return def, true
	}
	return convert[string](args[i], stringType)
}

// stringFilter adapts a filter of liquid's shape func(s string[, unused string]) string.
func stringFilter(params int, f func(string) string) nativeFilter {
	return func(_ *fastRun, recv any, args []any) (any, bool) {
		if len(args) > params-1 {
			return nil, false // liquid: wrong number of arguments
		}
		s := ""
		if recv != nil {
			var ok bool
			if s, ok = convert[string](recv, stringType); !ok {
				return nil, false
			}
		}
		for i := range args {
			if _, ok := param[string](args, i, stringType); !ok {
				return nil, false
			}
		}
		return f(s), true
	}
}

// nativeFilters are the filters the fast path computes itself, each equal to the function the
// engines register under that name (liquid's standard filters, money, date, raw). None of them
// can grow a string by more than a constant factor, so the writers' and assign's checks bound them.
var nativeFilters = map[string]nativeFilter{
	"url_encode": stringFilter(1, url.QueryEscape),
	"escape":     stringFilter(1, html.EscapeString),
	"strip":      stringFilter(1, strings.TrimSpace),
	"capitalize": stringFilter(2, func(s string) string {
		if len(s) == 0 {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	}),
	"downcase": stringFilter(2, strings.ToLower),
	"upcase":   stringFilter(2, strings.ToUpper),
	"default": func(_ *fastRun, recv any, args []any) (any, bool) {
		if len(args) > 1 {
			return nil, false
		}
		var def any
		if len(args) == 1 {
			def = args[0]
		}
		if recv == nil || recv == false || values.IsEmpty(recv) {
			return def, true
		}
		return recv, true
	},
	"money": func(r *fastRun, recv any, args []any) (any, bool) {
		if len(args) > 2 {
			return nil, false
		}
		var amount float64
		switch x := recv.(type) {
		case nil:
		case float64:
			amount = x
		default:
			var ok bool
			if amount, ok = convert[float64](recv, floatType); !ok {
				return nil, false
			}
		}
		code, ok1 := funcParam(args, 0, "USD")
		locale, ok2 := funcParam(args, 1, "")
		if !ok1 || !ok2 {
			return nil, false
		}
		s, err := formatMoney(amount, code, localeOr(locale, r.locale))
		if err != nil {
			return nil, false
		}
		return s, true
	},
	"date": func(_ *fastRun, recv any, args []any) (any, bool) {
		if len(args) > 2 {
			return nil, false
		}
		var t time.Time
		if s, isString := recv.(string); isString && (s == "now" || s == "today") {
			// The wall clock at the moment of the call: leave it to liquid, so that the two paths
			// can be compared byte for byte (the render's own clock is the now variable).
			return nil, false
		}
		if recv != nil {
			var ok bool
			if t, ok = convert[time.Time](recv, timeType); !ok {
				return nil, false
			}
		}
		format, ok1 := funcParam(args, 0, dateFormatDefault)
		zone, ok2 := funcParam(args, 1, "")
		if !ok1 || !ok2 {
			return nil, false
		}
		s, err := formatDate(t, format, zone)
		if err != nil {
			return nil, false
		}
		return s, true
	},
}
