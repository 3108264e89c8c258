package templates

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/osteele/liquid/expressions"
	"github.com/osteele/liquid/render"
)

// A template is code that runs once per recipient. Budgets bound what one render may cost, on the
// fast path and in liquid alike, and a breach stops the render with a *BudgetError before the
// oversized value exists: writers refuse bytes past a part's limit, the filters that build
// strings or arrays compute the result's size first, loops count every iteration and the clock
// is read every few dozen steps.
//
// How the budgets reach liquid's renderer (osteele/liquid v1.6 has no hooks for them): the
// per-render state rides in the bindings under a key no template can name (budgetKey); the
// rewrite in engine.go puts a {% tailor_loop %} tag at the top of every for and tablerow body,
// which counts the iteration and checks the clock; assign and capture are our own tags; the
// standard filters are wrapped (guardFilters) with the renderer's size limits; and each part
// renders into a limitWriter.

// Budget names one budget in a *BudgetError.
type Budget string

// The budgets of Budgets.
const (
	BudgetHTML       Budget = "html"       // rendered size of the html part
	BudgetText       Budget = "text"       // rendered size of the text part
	BudgetSubject    Budget = "subject"    // rendered size of the subject
	BudgetPreheader  Budget = "preheader"  // rendered size of the preheader
	BudgetIterations Budget = "iterations" // loop iterations of one message
	BudgetString     Budget = "string"     // size of a string a filter, assign or capture builds
	BudgetItems      Budget = "items"      // length of an array a filter builds or expands a range into
	BudgetTime       Budget = "time"       // rendering time of one message
	budgetURL        Budget = "url"        // rendered size of a content source's url
)

// Budget defaults.
const (
	BudgetHTMLDefault       = 1 << 20   // bytes
	BudgetTextDefault       = 256 << 10 // bytes
	BudgetSubjectDefault    = 1 << 10   // bytes
	BudgetPreheaderDefault  = 1 << 10   // bytes
	BudgetIterationsDefault = 100_000
	BudgetStringDefault     = 1 << 20 // bytes
	BudgetItemsDefault      = 100_000
	BudgetTimeDefault       = time.Second

	sourceURLMax = 8 << 10 // bytes of a rendered content source url
	// checkEvery (a power of two) is how many budget steps (loop iterations, outputs, assigns, captures, writes)
	// pass between two reads of the clock and the context.
	checkEvery = 32
)

// Budgets bound one render of one message. Zero values mean the defaults.
type Budgets struct {
	// HTML is the most bytes the rendered html part may have. Default 1 MB.
	HTML int
	// Text is the most bytes of the rendered text part. Default 256 KB.
	Text int
	// Subject is the most bytes of the rendered subject. Default 1 KB.
	Subject int
	// Preheader is the most bytes of the rendered preheader. Default 1 KB.
	Preheader int
	// Iterations is the most loop iterations (for and tablerow, all loops and parts of the
	// message together). Default 100 000.
	Iterations int
	// String is the most bytes of any string a filter (append, replace, join, ...), an assign or
	// a capture builds. Default 1 MB.
	String int
	// Items is the most elements of an array a filter builds (concat, split, map, ...) or of a
	// range a filter expands into an array ((1..n) | join). Default 100 000.
	Items int
	// Time is the most time rendering one message's parts may take, content fetching excluded.
	// The clock is read every few dozen steps (the first read starts it), so a render stops
	// shortly after it. Default 1s.
	Time time.Duration
}

func (b Budgets) withDefaults() Budgets {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&b.HTML, BudgetHTMLDefault)
	def(&b.Text, BudgetTextDefault)
	def(&b.Subject, BudgetSubjectDefault)
	def(&b.Preheader, BudgetPreheaderDefault)
	def(&b.Iterations, BudgetIterationsDefault)
	def(&b.String, BudgetStringDefault)
	def(&b.Items, BudgetItemsDefault)
	if b.Time <= 0 {
		b.Time = BudgetTimeDefault
	}
	return b
}

// ErrBudgetExceeded is what every *BudgetError unwraps to.
var ErrBudgetExceeded = errors.New("templates: render budget exceeded")

// BudgetError reports a render stopped because it exceeded one of its Budgets. Render returns it
// wrapped in a *RenderError; use errors.As to get it.
type BudgetError struct {
	Budget Budget
	// Limit is the budget: bytes, items or iterations; nanoseconds for BudgetTime.
	Limit int64
	// File and Line locate the Liquid that hit the budget (the part file; 0 when unknown). In
	// liquid's renderer (the fallback) a size breach inside a loop may name the loop's line.
	File string
	Line int
	// Template is true when the breach is a property of the template rather than of this
	// recipient's data: Renderer.Render sets it when the same template variant, rendered with
	// no profile (only the manifest defaults) and every content source at its fallback, also
	// exceeds a budget. See IsTemplateFault.
	Template bool
}

func (e *BudgetError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if loc != "" {
		loc += ": "
	}
	return loc + e.msg()
}

// msg is the message without the location.
func (e *BudgetError) msg() string {
	var what string
	switch e.Budget {
	case BudgetHTML, BudgetText, BudgetSubject, BudgetPreheader:
		what = fmt.Sprintf("the rendered %s part is over %s", e.Budget, bytesText(e.Limit))
	case budgetURL:
		what = fmt.Sprintf("the rendered url is over %s", bytesText(e.Limit))
	case BudgetIterations:
		what = fmt.Sprintf("loops ran over %d iterations for one message", e.Limit)
	case BudgetString:
		what = fmt.Sprintf("a string built by a filter, assign or capture would be over %s", bytesText(e.Limit))
	case BudgetItems:
		what = fmt.Sprintf("an array or range would have over %d items", e.Limit)
	case BudgetTime:
		what = fmt.Sprintf("rendering took over %s", time.Duration(e.Limit))
	default:
		what = fmt.Sprintf("%s over %d", e.Budget, e.Limit)
	}
	return "render budget exceeded: " + what + " (render less: bound loops with limit:, keep content short)"
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Unwrap returns ErrBudgetExceeded.
func (e *BudgetError) Unwrap() error { return ErrBudgetExceeded }

// IsTemplateFault reports whether err (from Renderer.Render) is a budget breach that is a property
// of the template, the same for every recipient (BudgetError.Template): a campaign should stop
// rather than skip recipients one by one. It is false for a breach caused by one recipient's data
// (a huge content array for one customer: skip that recipient) and for any other error.
func IsTemplateFault(err error) bool {
	var be *BudgetError
	return errors.As(err, &be) && be.Template
}

// budgetKey is the binding that carries the *budget of a render into liquid's tags; no template
// can name it.
const budgetKey = "\x00tailor budget"

// budget is the state of the budgets of one message's render. It is used by one goroutine.
type budget struct {
	lim        Budgets
	ctx        context.Context
	now        func() time.Time
	deadline   time.Time // zero until the first check
	iterations int
	steps      int
	line       int // of the last loop iteration: the location of a breach liquid reports without one
	file       string
}

// newBudget returns the budget of one message. Its clock starts at the first check (after
// checkEvery steps): most renders finish before, and read no clock.
func newBudget(ctx context.Context, lim Budgets, now func() time.Time) *budget {
	b := budgetPool.Get().(*budget)
	*b = budget{lim: lim, ctx: ctx, now: now}
	return b
}

// budgetPool recycles budgets: one per message is the renderer's only allocation that does not
// end up in the message.
var budgetPool = sync.Pool{New: func() any { return new(budget) }}

// release returns b to the pool; b must not be used after.
func (b *budget) release() {
	*b = budget{}
	budgetPool.Put(b)
}

// restart starts the clock again (after content is fetched).
func (b *budget) restart() { b.deadline = time.Time{} }

// breach returns the error of exceeding kind. A nil budget (liquid tags outside a Renderer)
// has no file.
func (b *budget) breach(kind Budget, limit int64, line int) *BudgetError {
	be := &BudgetError{Budget: kind, Limit: limit, Line: line}
	if b != nil {
		be.File = b.file
	}
	return be
}

// locate gives a budget error liquid returned the file and line it lacks: line (from liquid's
// error) or, when liquid had none (a breach at the end of a block), the last loop's line.
func (b *budget) locate(stop error, line int) error {
	var be *BudgetError
	if !errors.As(stop, &be) {
		return stop
	}
	if be.File == "" {
		be.File = b.file
	}
	if be.Line == 0 {
		be.Line = cmp.Or(line, b.line)
	}
	return be
}

// iterate counts one loop iteration.
func (b *budget) iterate(line int) error {
	b.iterations++
	b.line = line
	if b.iterations > b.lim.Iterations {
		return b.breach(BudgetIterations, int64(b.lim.Iterations), line)
	}
	b.steps++
	if b.steps&(checkEvery-1) != 0 {
		return nil
	}
	return b.check(line)
}

// step counts one step of work and every checkEvery steps checks the context and the clock.
func (b *budget) step(line int) error {
	if b == nil {
		return nil
	}
	b.steps++
	if b.steps&(checkEvery-1) != 0 {
		return nil
	}
	return b.check(line)
}

// check checks the context and the clock.
func (b *budget) check(line int) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	now := b.now()
	if b.deadline.IsZero() {
		b.deadline = now.Add(b.lim.Time)
	}
	if now.After(b.deadline) {
		return b.breach(BudgetTime, int64(b.lim.Time), line)
	}
	return nil
}

// value checks the size of a value an assign or capture stores.
func (b *budget) value(v any, line int) error {
	if err := sizeOf(v, b.lim.String, b.lim.Items); err != nil {
		err.File, err.Line = b.file, line
		return err
	}
	return nil
}

// sizeOf returns a *BudgetError when v is a string over maxString bytes or an array (or range)
// of over maxItems elements.
func sizeOf(v any, maxString, maxItems int) *BudgetError {
	switch x := v.(type) {
	case nil, bool, int, float64, map[string]any:
		return nil
	case string:
		if len(x) > maxString {
			return &BudgetError{Budget: BudgetString, Limit: int64(maxString)}
		}
		return nil
	case safeHTML:
		return sizeOf(string(x), maxString, maxItems)
	case []byte:
		if len(x) > maxString {
			return &BudgetError{Budget: BudgetString, Limit: int64(maxString)}
		}
		return nil
	case []any:
		if len(x) > maxItems {
			return &BudgetError{Budget: BudgetItems, Limit: int64(maxItems)}
		}
		return nil
	case iterable: // values.Range
		if x.Len() > maxItems {
			return &BudgetError{Budget: BudgetItems, Limit: int64(maxItems)}
		}
		return nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		if rv.Len() > maxItems {
			return &BudgetError{Budget: BudgetItems, Limit: int64(maxItems)}
		}
	case reflect.String:
		if rv.Len() > maxString {
			return &BudgetError{Budget: BudgetString, Limit: int64(maxString)}
		}
	}
	return nil
}

// stopCause returns the *BudgetError or context error that err (a liquid error, a filter error,
// a fast-path error or a recovered panic) carries, or nil: those stop a render instead of making
// it fall back or fail with liquid's message.
func stopCause(err error) error {
	for depth := 0; err != nil && depth < 8; depth++ {
		var be *BudgetError
		if errors.As(err, &be) {
			return be
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		switch e := err.(type) {
		case expressions.FilterError:
			err = e.Err
		case interface{ Cause() error }:
			err = e.Cause()
		default:
			return nil
		}
	}
	return nil
}

// budgetOf returns the budget of the render a liquid tag runs in (nil outside Renderer).
func budgetOf(ctx render.Context) *budget {
	b, _ := ctx.Get(budgetKey).(*budget)
	return b
}

// limitWriter collects a part (or a capture) rendered by liquid and refuses to grow past limit:
// the write that would pass it fails with the budget's error, which liquid returns, or panics
// with at the end of a block (trimWriter.Flush), where part.renderLiquid recovers it.
type limitWriter struct {
	buf   []byte
	limit int
	kind  Budget
	b     *budget
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(w.buf)+len(p) > w.limit {
		return 0, w.b.breach(w.kind, int64(w.limit), 0)
	}
	w.buf = append(w.buf, p...)
	if err := w.b.step(0); err != nil {
		return 0, err
	}
	return len(p), nil
}

var _ io.Writer = (*limitWriter)(nil)

// loopTick is the tag the rewrite puts at the top of every loop body; its argument is the loop's
// line.
const loopTick = "tailor_loop"

func loopTickTag(args string) (func(io.Writer, render.Context) error, error) {
	var line int
	if _, err := fmt.Sscan(strings.TrimSpace(args), &line); err != nil {
		return nil, fmt.Errorf("%s: want a line number: %w", loopTick, err)
	}
	return func(_ io.Writer, ctx render.Context) error {
		// It writes nothing, not even "": an empty write would flush liquid's trim buffer and
		// change whitespace control around the loop.
		if b := budgetOf(ctx); b != nil {
			return b.iterate(line)
		}
		return nil
	}, nil
}
