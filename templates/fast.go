package templates

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/values"

	"github.com/tailor-email/tailor/internal/money"
)

// The fast path. osteele/liquid renders through a tree of closures, converts every text node
// to a fresh []byte, calls every filter through reflection and, here, runs one extra filter per
// output for escaping; that made a 15 KB email cost ~300µs. compileFast turns a part's parse tree
// (liquid's own parser, so syntax is exactly liquid's) into a small program that writes into one
// reused buffer, evaluates expressions with liquid's expression package (or, for the common
// "path | filter: args" shape, natively: see fastexpr.go), and escapes html outputs inline.
//
// It mirrors liquid v1.6's renderer, quirks included (whitespace control only reaches the
// previous write, a nil for-loop collection skips the else branch, loop variables are restored
// afterwards). Whatever it does not cover (tablerow, include, map iteration, custom tags) makes
// compileFast return nil and the part renders with liquid. Any run-time error or panic in the
// fast path also makes the part render again with liquid, so error messages are exactly liquid's;
// TestFast_MatchesLiquid and FuzzFast_MatchesLiquid compare the two renderers. A budget breach
// (budget.go) is not retried with liquid: it stops the render with the fast path's *BudgetError,
// whose line is that of the op that hit the budget.

// errSlowPath makes a part render with liquid instead.
var errSlowPath = errors.New("templates: render with liquid")

// fallback is the error of renderFast when the part must render with liquid; reason labels the
// fallbacks counter.
type fallback struct{ reason string }

func (f *fallback) Error() string { return "templates: render with liquid (" + f.reason + ")" }

// Control flow of break and continue, which liquid also implements as errors.
var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

type opKind uint8

const (
	opText opKind = iota
	opRaw
	opOutput
	opTrimLeft
	opTrimRight
	opIf
	opCase
	opFor
	opCapture
	opAssign
	opCycle
	opBreak
	opContinue
)

// op is one instruction of a compiled part.
type op struct {
	kind    opKind
	line    int      // of the node, for budget errors
	text    string   // opText
	slices  []string // opRaw
	expr    *fastExpr
	escape  bool      // opOutput in the html part
	name    string    // opAssign, opCapture: the variable; opFor: the loop variable
	safe    bool      // opCapture: the html part's capture, whose content is marked safe
	body    []op      // opFor, opCapture
	els     *[]op     // opFor: the else clause
	when    []branch  // opIf, opCase
	loop    *loopSpec // opFor
	cycle   *expressions.Cycle
	caseVal *fastExpr // opCase
}

type branch struct {
	tests []*fastExpr // opIf: one test; opCase: any of these equal to the case value (none: else)
	body  []op
}

type loopSpec struct {
	limit, offset  *fastExpr
	reversed       bool
	forloop        bool // the body may read forloop (or cycle), so it must be bound
	forloopEscapes bool // a tag may keep the forloop object: a new one for each iteration
}

// compileFast compiles src, which liquid has already parsed without error, or returns nil when
// the fast path does not cover it.
func compileFast(src, file string, line int, html bool) []op {
	root, err := grammar()[html].Parse(src, parser.SourceLoc{Pathname: file, LineNo: line})
	if err != nil {
		return nil
	}
	seq, ok := root.(*parser.ASTSeq)
	if !ok {
		return nil
	}
	c := fastCompiler{html: html}
	prog := c.nodes(seq.Children)
	if c.unsupported {
		return nil
	}
	if prog == nil {
		prog = []op{}
	}
	return prog
}

type fastCompiler struct {
	html        bool
	unsupported bool
}

func (c *fastCompiler) fail() []op { c.unsupported = true; return nil }

func (c *fastCompiler) nodes(ns []parser.ASTNode) []op {
	var out []op
	for _, n := range ns {
		if c.unsupported {
			return nil
		}
		switch n := n.(type) {
		case *parser.ASTSeq:
			out = append(out, c.nodes(n.Children)...)
		case *parser.ASTText:
			out = append(out, op{kind: opText, text: n.Source, line: n.SourceLoc.LineNo})
		case *parser.ASTRaw:
			out = append(out, op{kind: opRaw, slices: n.Slices})
		case *parser.ASTTrim:
			if n.TrimDirection == parser.Left {
				out = append(out, op{kind: opTrimLeft})
			} else {
				out = append(out, op{kind: opTrimRight})
			}
		case *parser.ASTObject:
			o := c.output(n)
			o.line = n.SourceLoc.LineNo
			out = append(out, o)
		case *parser.ASTTag:
			if n.Name == loopTick {
				continue // the fast path counts iterations in its loop
			}
			o := c.tag(n)
			o.line = n.SourceLoc.LineNo
			out = append(out, o)
		case *parser.ASTBlock:
			o := c.block(n)
			o.line = n.SourceLoc.LineNo
			out = append(out, o)
		default:
			return c.fail()
		}
	}
	return out
}

func (c *fastCompiler) expr(src string) *fastExpr {
	e, err := compileExpr(src)
	if err != nil {
		c.unsupported = true
	}
	return e
}

func (c *fastCompiler) output(n *parser.ASTObject) op {
	args := n.Args
	escape := false
	if c.html {
		// Evaluate the author's expression and escape in Go rather than through the filter.
		i := strings.LastIndex(args, "| "+autoescapeFilter)
		if i < 0 || strings.TrimSpace(args[i+len("| "+autoescapeFilter):]) != "" {
			c.unsupported = true
			return op{}
		}
		args, escape = args[:i], true
	}
	return op{kind: opOutput, expr: c.expr(args), escape: escape}
}

func (c *fastCompiler) tag(n *parser.ASTTag) op {
	switch n.Name {
	case "assign":
		stmt, err := expressions.ParseStatement(expressions.AssignStatementSelector, n.Args)
		if err != nil {
			break
		}
		return op{kind: opAssign, name: stmt.Assignment.Variable, expr: &fastExpr{liquid: stmt.Assignment.ValueFn}}
	case "cycle":
		stmt, err := expressions.ParseStatement(expressions.CycleStatementSelector, n.Args)
		if err != nil {
			break
		}
		return op{kind: opCycle, cycle: &stmt.Cycle}
	case "break":
		return op{kind: opBreak}
	case "continue":
		return op{kind: opContinue}
	}
	c.unsupported = true
	return op{}
}

func (c *fastCompiler) block(n *parser.ASTBlock) op {
	switch n.Name {
	case "if", "unless":
		test := c.expr(n.Args)
		if test == nil {
			break
		}
		test.not = n.Name == "unless"
		o := op{kind: opIf, when: []branch{{tests: []*fastExpr{test}, body: c.nodes(n.Body)}}}
		for _, cl := range n.Clauses {
			test := &fastExpr{liquid: expressions.Constant(true)}
			if cl.Name == "elsif" {
				test = c.expr(cl.Args)
			}
			o.when = append(o.when, branch{tests: []*fastExpr{test}, body: c.nodes(cl.Body)})
		}
		return o
	case "case":
		o := op{kind: opCase, caseVal: c.expr(n.Args)}
		for _, cl := range n.Clauses {
			b := branch{body: c.nodes(cl.Body)}
			if cl.Name == "when" {
				stmt, err := expressions.ParseStatement(expressions.WhenStatementSelector, cl.Args)
				if err != nil {
					return op{kind: opCase, when: c.fail2()}
				}
				for _, e := range stmt.When.Exprs {
					b.tests = append(b.tests, &fastExpr{liquid: e})
				}
			}
			o.when = append(o.when, b)
		}
		return o
	case "for":
		stmt, err := expressions.ParseStatement(expressions.LoopStatementSelector, n.Args)
		if err != nil || len(n.Clauses) > 1 || stmt.Loop.Cols != nil {
			break
		}
		l := stmt.Loop
		spec := &loopSpec{reversed: l.Reversed}
		spec.forloop, spec.forloopEscapes = mentionsForloop(n)
		if l.Limit != nil {
			spec.limit = &fastExpr{liquid: l.Limit}
		}
		if l.Offset != nil {
			spec.offset = &fastExpr{liquid: l.Offset}
		}
		// The collection is compiled again from the source so that simple paths are native.
		coll := &fastExpr{liquid: l.Expr}
		if src, ok := loopCollection(n.Args, l.Variable); ok {
			if n := parseNative(src); n != nil && len(n.filters) == 0 {
				coll = &fastExpr{native: n}
			}
		}
		o := op{kind: opFor, name: l.Variable, expr: coll, loop: spec, body: c.nodes(n.Body)}
		if len(n.Clauses) == 1 {
			if n.Clauses[0].Name != "else" {
				break
			}
			els := c.nodes(n.Clauses[0].Body)
			o.els = &els
		}
		return o
	case captureBlock: // every capture, rewritten (see rewrite)
		if len(n.Clauses) > 0 {
			break
		}
		return op{kind: opCapture, name: strings.TrimSpace(n.Args), safe: c.html, body: c.nodes(n.Body)}
	}
	c.unsupported = true
	return op{}
}

func (c *fastCompiler) fail2() []branch { c.unsupported = true; return nil }

// loopCollection returns the collection path of a for tag's arguments "item in a.b.c [modifiers]".
func loopCollection(args, variable string) (string, bool) {
	f := strings.Fields(args)
	if len(f) < 3 || f[0] != variable || f[1] != "in" {
		return "", false
	}
	for _, c := range f[2] {
		if !isIdentByte(byte(c)) && c != '.' || c == '-' {
			return "", false
		}
	}
	if len(f) > 3 && !strings.HasPrefix(f[3], "reversed") && !strings.HasPrefix(f[3], "limit") &&
		!strings.HasPrefix(f[3], "offset") {
		return "", false // "a.b .c" is a.b.c to liquid's lexer: the collection is liquid's
	}
	return f[2], true
}

// mentionsForloop reports whether a loop body might read the forloop variable: then it is
// bound for each item, as liquid does; otherwise binding it would only cost allocations.
// escapes reports whether a tag other than cycle mentions it (an assign could keep the
// forloop object past its iteration): without that, one object serves every iteration.
func mentionsForloop(n *parser.ASTBlock) (mentions, escapes bool) {
	var walk func([]parser.ASTNode)
	walk = func(ns []parser.ASTNode) {
		for _, n := range ns {
			switch n := n.(type) {
			case *parser.ASTSeq:
				walk(n.Children)
			case *parser.ASTObject:
				if strings.Contains(n.Args, "forloop") {
					mentions = true
				}
			case *parser.ASTTag:
				switch {
				case n.Name == "cycle":
					mentions = true
				case strings.Contains(n.Args, "forloop"):
					mentions, escapes = true, true
				}
			case *parser.ASTBlock:
				args := n.Args
				for _, cl := range n.Clauses {
					args += " " + cl.Args
				}
				if strings.Contains(args, "forloop") {
					// Conditions only read it; a loop over it, or anything else, may keep it.
					mentions = true
					if n.Name != "if" && n.Name != "unless" && n.Name != "case" {
						escapes = true
					}
				}
				walk(n.Body)
				for _, cl := range n.Clauses {
					walk(cl.Body)
				}
			}
		}
	}
	walk(n.Body)
	for _, cl := range n.Clauses {
		walk(cl.Body)
	}
	return mentions, escapes
}

// fastWriter mirrors liquid's trimWriter on one growing buffer: the bytes from mark on are
// liquid's unflushed buffer, which a {{- trims; trim is liquid's trim flag, which a -}} sets.
// buf may not grow past limit (a part's budget, or a capture's): writeString stays as small as
// the compiler inlines, so ops check full() after each write, and the buffer passes the limit by
// at most one write (a text node of the template or one value, both bounded) before the render
// stops; writeEscaped checks before it writes.
type fastWriter struct {
	buf   []byte
	mark  int
	trim  bool
	limit int
	over  bool
}

func (w *fastWriter) writeString(s string) {
	if w.trim {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		w.trim = false
	} else {
		w.mark = len(w.buf)
	}
	w.buf = append(w.buf, s...)
}

// full reports whether the buffer passed its limit.
func (w *fastWriter) full() bool { return w.over || len(w.buf) > w.limit }

// begin and end bracket a write appended to buf directly.
func (w *fastWriter) begin() (start int, trim bool) {
	trim = w.trim
	if w.trim {
		w.trim = false
	} else {
		w.mark = len(w.buf)
	}
	return len(w.buf), trim
}

func (w *fastWriter) end(start int, trim bool) {
	if trim {
		w.trimFrom(start)
	}
}

// trimFrom removes the leading white space of what was written from start.
func (w *fastWriter) trimFrom(start int) {
	b := w.buf[start:]
	i := 0
	for i < len(b) {
		r, size := utf8.DecodeRune(b[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	if i > 0 {
		n := copy(b, b[i:])
		w.buf = w.buf[:start+n]
	}
}

func (w *fastWriter) trimLeft() {
	tail := w.buf[w.mark:]
	w.buf = w.buf[:w.mark+len(trimRightSpace(tail))]
	w.mark = len(w.buf)
}

func trimRightSpace(b []byte) []byte {
	for len(b) > 0 {
		r, size := utf8.DecodeLastRune(b)
		if !unicode.IsSpace(r) {
			break
		}
		b = b[:len(b)-size]
	}
	return b
}

func (w *fastWriter) flush() { w.mark = len(w.buf) }

// fastRun is the state of one render of one part.
type fastRun struct {
	w        fastWriter
	args     []any // filter arguments, reused
	bindings map[string]any
	ctx      expressions.Context
	cfg      *config
	locale   money.Locale
	b        *budget
	kind     Budget // the budget w.limit is: the part's, or BudgetString in a capture
	max      int    // that budget's value
}

var writerPool = sync.Pool{New: func() any { return &fastRun{} }}

// renderFast renders prog with a copy of bindings (assign, capture and loops write into it) for
// one part whose size budget is kind (max bytes). It returns a *fallback when the part must be
// rendered with liquid instead, and a *BudgetError or ctx's error when the render must stop.
func renderFast(prog []op, bindings map[string]any, e *env, html bool, b *budget, kind Budget, max int) (out string, err error) {
	r := writerPool.Get().(*fastRun)
	r.cfg, r.locale, r.b, r.kind, r.max = e.config(html), e.locale, b, kind, max
	if r.bindings == nil {
		r.bindings = make(map[string]any, len(bindings)+4)
	}
	for k, v := range bindings {
		r.bindings[k] = v
	}
	r.w = fastWriter{buf: r.w.buf[:0], limit: max}
	defer func() {
		if p := recover(); p != nil {
			err = &fallback{reason: FallbackPanic}
			if e, ok := p.(error); ok {
				if stop := stopCause(e); stop != nil {
					err = stop
				}
			}
			out = ""
		}
		clear(r.bindings)
		r.ctx, r.b, r.cfg = nil, nil, nil
		if cap(r.w.buf) <= 1<<20 { // do not keep a huge buffer alive
			writerPool.Put(r)
		}
	}()
	if err := r.seq(prog); err != nil {
		if stop := stopCause(err); stop != nil {
			return "", stop
		}
		if errors.Is(err, errSlowPath) {
			return "", &fallback{reason: FallbackSlowPath}
		}
		return "", &fallback{reason: FallbackError}
	}
	return string(r.w.buf), nil
}

// overflow is the error of a write past w.limit.
func (r *fastRun) overflow(line int) error {
	return r.b.breach(r.kind, int64(r.max), line)
}

// at gives a budget error from evaluating an expression the line of its op.
func (r *fastRun) at(err error, line int) error {
	var be *BudgetError
	if stop := stopCause(err); errors.As(stop, &be) {
		if be.Line == 0 {
			be.Line = line
		}
		if be.File == "" {
			be.File = r.b.file
		}
		return be
	}
	return err
}

// seq renders a sequence and flushes, like liquid's RenderSequence (which does not flush when
// a node fails, break and continue included).
func (r *fastRun) seq(ops []op) error {
	for i := range ops {
		if err := r.op(&ops[i]); err != nil {
			return err
		}
	}
	r.w.flush()
	return nil
}

func (r *fastRun) op(o *op) error {
	switch o.kind {
	case opText:
		r.w.writeString(o.text)
		if r.w.full() {
			return r.overflow(o.line)
		}
	case opRaw:
		for _, s := range o.slices {
			r.w.writeString(s)
		}
		if r.w.full() {
			return r.overflow(o.line)
		}
	case opTrimLeft:
		r.w.trimLeft()
	case opTrimRight:
		r.w.trim = true
	case opOutput:
		v, err := o.expr.eval(r)
		if err != nil {
			return r.at(err, o.line)
		}
		if o.escape {
			r.writeEscaped(v)
		} else {
			r.writeObject(v)
		}
		if r.w.full() {
			return r.overflow(o.line)
		}
		return r.b.step(o.line)
	case opAssign:
		v, err := o.expr.eval(r)
		if err != nil {
			return r.at(err, o.line)
		}
		if err := r.b.value(v, o.line); err != nil {
			return err
		}
		r.bindings[o.name] = v
		return r.b.step(o.line)
	case opIf:
		if err := r.b.step(o.line); err != nil {
			return err
		}
		for i := range o.when {
			b := &o.when[i]
			v, err := b.tests[0].eval(r)
			if err != nil {
				return r.at(err, o.line)
			}
			if v != nil && v != false {
				return r.seq(b.body)
			}
		}
	case opCase:
		sel, err := o.caseVal.eval(r)
		if err != nil {
			return r.at(err, o.line)
		}
		for i := range o.when {
			b := &o.when[i]
			if b.tests == nil {
				return r.seq(b.body)
			}
			for _, t := range b.tests {
				v, err := t.eval(r)
				if err != nil {
					return r.at(err, o.line)
				}
				if values.Equal(sel, v) {
					return r.seq(b.body)
				}
			}
		}
	case opFor:
		return r.loop(o)
	case opCapture:
		return r.capture(o)
	case opCycle:
		loopVar := r.bindings["forloop"]
		if loopVar == nil {
			return errSlowPath
		}
		var cycles map[string]int
		switch v := loopVar.(type) {
		case *loopState:
			cycles = v.cycles
		case map[string]any:
			cycles = v[".cycles"].(map[string]int)
		default:
			return errSlowPath // an assign replaced it
		}
		n := cycles[o.cycle.Group]
		cycles[o.cycle.Group] = n + 1
		r.w.writeString(o.cycle.Values[n%len(o.cycle.Values)])
		if r.w.full() {
			return r.overflow(o.line)
		}
	case opBreak:
		return errBreak
	case opContinue:
		return errContinue
	}
	return nil
}

// capture renders a capture block into the buffer past the part's output, under the string
// budget, and binds what it rendered.
func (r *fastRun) capture(o *op) error {
	start, mark, trim := len(r.w.buf), r.w.mark, r.w.trim
	limit, kind, max := r.w.limit, r.kind, r.max
	r.w.mark, r.w.trim = start, false
	r.w.limit, r.kind, r.max = start+min(r.b.lim.String, math.MaxInt-start), BudgetString, r.b.lim.String
	err := r.seq(o.body)
	over := r.w.full()
	s := string(r.w.buf[start:])
	r.w.buf, r.w.mark, r.w.trim = r.w.buf[:start], mark, trim
	if over && err == nil {
		err = r.overflow(o.line)
	}
	r.w.limit, r.kind, r.max, r.w.over = limit, kind, max, false
	if err != nil {
		return err
	}
	if o.safe {
		r.bindings[o.name] = safeHTML(s)
		r.w.writeString("") // the custom block writes its (empty) output, which flushes
	} else {
		r.bindings[o.name] = s
	}
	return r.b.step(o.line)
}

// iterable is liquid's iteration interface (values.Range implements it).
type iterable interface {
	Len() int
	Index(int) any
}

type sliceIter []any

func (s sliceIter) Len() int        { return len(s) }
func (s sliceIter) Index(i int) any { return s[i] }

type reflectIter reflect.Value

func (w reflectIter) Len() int        { return reflect.Value(w).Len() }
func (w reflectIter) Index(i int) any { return reflect.Value(w).Index(i).Interface() }

type windowIter struct {
	it            iterable
	reversed      bool
	offset, limit int // limit < 0: none
}

func (w windowIter) Len() int {
	n := max(0, w.it.Len()-w.offset)
	if w.limit >= 0 {
		n = min(n, w.limit)
	}
	return n
}

func (w windowIter) Index(i int) any {
	i += w.offset
	if w.reversed {
		i = w.it.Len() - 1 - i
	}
	return w.it.Index(i)
}

// loopState is the forloop variable of a loop whose body only reads it (conditions, outputs,
// cycle): one object for the whole loop, its counters moved on at each iteration, read
// field by field by the native expressions (operand.eval) without a map. Liquid's own
// expressions and filters see the map liquid would have bound (ToLiquid, a drop).
type loopState struct {
	i, n   int
	cycles map[string]int
}

// ToLiquid is the forloop map liquid binds for the current iteration.
func (s *loopState) ToLiquid() any { return s.toMap() }

func (s *loopState) toMap() map[string]any {
	i, n := s.i, s.n
	return map[string]any{
		"first": i == 0, "last": i == n-1, "index": i + 1, "index0": i,
		"rindex": n - i, "rindex0": n - i - 1, "length": n, ".cycles": s.cycles,
	}
}

// field is what liquid finds at name in the map ToLiquid returns.
func (s *loopState) field(name string) any {
	switch i, n := s.i, s.n; name {
	case "first":
		return i == 0
	case "last":
		return i == n-1
	case "index":
		return i + 1
	case "index0":
		return i
	case "rindex":
		return n - i
	case "rindex0":
		return n - i - 1
	case "length":
		return n
	}
	return lookup(s.toMap(), name)
}

func (r *fastRun) loop(o *op) error {
	val, err := o.expr.eval(r)
	if err != nil {
		return r.at(err, o.line)
	}
	var it iterable
	switch v := val.(type) {
	case nil:
		return nil // liquid renders neither the body nor the else clause
	case []any:
		it = sliceIter(v)
	case iterable:
		it = v
	default:
		rt := reflect.TypeOf(v)
		if (rt.Kind() != reflect.Slice && rt.Kind() != reflect.Array) || strings.HasPrefix(rt.PkgPath(), "gopkg.in/yaml") {
			return errSlowPath // maps iterate in random order, yaml.MapSlice has its own rules
		}
		it = reflectIter(reflect.ValueOf(v))
	}
	if o.loop.reversed || o.loop.offset != nil || o.loop.limit != nil {
		win := windowIter{it: it, reversed: o.loop.reversed, limit: -1}
		if o.loop.offset != nil {
			v, err := o.loop.offset.eval(r)
			if err != nil {
				return r.at(err, o.line)
			}
			n, ok := v.(int)
			if !ok {
				return errSlowPath
			}
			win.offset = max(n, 0)
		}
		if o.loop.limit != nil {
			v, err := o.loop.limit.eval(r)
			if err != nil {
				return r.at(err, o.line)
			}
			n, ok := v.(int)
			if !ok {
				return errSlowPath
			}
			if n >= 0 {
				win.limit = n
			}
		}
		it = win
	}
	n := it.Len()
	if n == 0 && o.els != nil {
		return r.seq(*o.els)
	}
	oldLoop, oldVar := r.bindings["forloop"], r.bindings[o.name]
	defer func() {
		r.bindings["forloop"] = oldLoop
		r.bindings[o.name] = oldVar
	}()
	var state *loopState
	if o.loop.forloop {
		state = &loopState{n: n, cycles: map[string]int{}}
		if !o.loop.forloopEscapes {
			r.bindings["forloop"] = state // a nested loop rebinds it and puts it back
		}
	}
	for i := range n {
		if err := r.b.iterate(o.line); err != nil {
			return err
		}
		r.bindings[o.name] = it.Index(i)
		if state != nil {
			state.i = i
			if o.loop.forloopEscapes {
				r.bindings["forloop"] = state.toMap() // a tag may keep it: its own object
			}
		}
		switch err := r.seq(o.body); err {
		case nil, errContinue:
		case errBreak:
			return nil
		default:
			return err
		}
	}
	return nil
}

// writeObject is liquid's writeObject.
func (r *fastRun) writeObject(value any) {
	value = values.ToLiquid(value)
	if value == nil {
		return
	}
	switch v := value.(type) {
	case string:
		r.w.writeString(v)
		return
	case int:
		start, trim := r.w.begin()
		r.w.buf = strconv.AppendInt(r.w.buf, int64(v), 10)
		r.w.end(start, trim)
		return
	case time.Time:
		r.w.writeString(v.Format("2006-01-02 15:04:05 -0700"))
		return
	case []byte:
		r.w.writeString(string(v))
		return
	}
	rv := reflect.ValueOf(value)
	switch rv.Kind() {
	case reflect.Array, reflect.Slice:
		for i := range rv.Len() {
			if item := rv.Index(i); item.IsValid() {
				r.writeObject(item.Interface())
			}
		}
	case reflect.Ptr:
		r.writeObject(reflect.ValueOf(value).Elem())
	default:
		r.w.writeString(fmt.Sprint(value))
	}
}

// writeEscaped writes what liquid writes for escapeValue(v), escaping strings into the buffer
// directly.
func (r *fastRun) writeEscaped(v any) {
	switch v := v.(type) {
	case string:
		if len(v) > r.w.limit-len(r.w.buf) { // escaping never shrinks
			r.w.over = true
			return
		}
		start, trim := r.w.begin()
		r.w.buf = appendEscaped(r.w.buf, v)
		r.w.end(start, trim)
		return
	case safeHTML:
		r.w.writeString(string(v))
		return
	}
	r.writeObject(escapeValue(v))
}

// appendEscaped appends html.EscapeString(s).
func appendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '\'':
			esc = "&#39;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&#34;"
		default:
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		last = i + 1
	}
	return append(b, s[last:]...)
}
