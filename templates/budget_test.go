package templates

import (
	"context"
	"errors"
	"math"
	"net/http"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osteele/liquid/filters"
	"github.com/osteele/liquid/values"
	"github.com/stretchr/testify/require"
)

// hostile is a template that exceeds a budget.
type hostile struct {
	name  string
	parts map[string]string // files over the base's
	lim   Budgets
	items int // the recs content source serves this many items (0: no source); built when used
	// so that a large body is not part of every test binary's heap (BenchmarkRender's GC)
	clock  bool // render with a clock that advances 1ms per reading
	budget Budget
	file   string
	line   int
	// template is whether the breach is the template's fault (not one recipient's data).
	template bool
}

var hostiles = []hostile{
	{name: "huge range", parts: map[string]string{FileHTML: "<p>\n{% for i in (1..100000000) %}x{% endfor %}</p>"},
		budget: BudgetIterations, file: FileHTML, line: 2, template: true},
	{name: "nested loops", parts: map[string]string{FileHTML: "<p>\n{% for i in (1..1000) %}{% for j in (1..1000) %}{% endfor %}{% endfor %}</p>"},
		budget: BudgetIterations, file: FileHTML, line: 2, template: true},
	{name: "rendered html size", parts: map[string]string{FileHTML: "<p>\n{% for i in (1..50000) %}" + strings.Repeat("x", 100) + "{% endfor %}</p>"},
		budget: BudgetHTML, file: FileHTML, line: 2, template: true},
	{name: "string doubling with append and assign", parts: map[string]string{FileHTML: "<p>\n" +
		`{% assign s = "xxxxxxxxxx" %}{% for i in (1..30) %}{% assign s = s | append: s %}{% endfor %}{{ s.size }}`},
		budget: BudgetString, file: FileHTML, line: 2, template: true},
	{name: "string doubling with capture", parts: map[string]string{FileHTML: "<p>\n" +
		`{% capture s %}x{% endcapture %}{% for i in (1..40) %}{% capture s %}{{ s }}{{ s }}{% endcapture %}{% endfor %}`},
		budget: BudgetString, file: FileHTML, line: 2, template: true},
	{name: "growth through replace", parts: map[string]string{FileText: "t\n" +
		`{% assign s = "xxxxxxxxxx" %}{% for i in (1..20) %}{% assign s = s | replace: "x", "xxxxxxxxxx" %}{% endfor %}`},
		budget: BudgetString, file: FileText, line: 2, template: true},
	{name: "a huge range joined", parts: map[string]string{FileHTML: "<p>\n{{ (1..100000000) | join: \",\" }}"},
		budget: BudgetItems, file: FileHTML, line: 2, template: true},
	{name: "join with a long separator", parts: map[string]string{FileText: "t\n" +
		`{% assign parts = (1..100000) | join: "," | split: "," %}{{ parts | join: "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy" }}`},
		budget: BudgetString, file: FileText, line: 2, template: true},
	{name: "array doubling with concat", parts: map[string]string{FileText: "t\n" +
		`{% assign a = (1..1000) | join: "," | split: "," %}{% for i in (1..20) %}{% assign a = a | concat: a %}{% endfor %}`},
		budget: BudgetItems, file: FileText, line: 2, template: true},
	{name: "url_encode past the string budget", parts: map[string]string{FileText: "t\n" +
		`{{ "` + strings.Repeat("%", 400) + `" | url_encode }}`},
		lim: Budgets{String: 1000}, budget: BudgetString, file: FileText, line: 2, template: true},
	{name: "rendered subject size", parts: map[string]string{FileSubject: "{% for i in (1..2000) %}x{% endfor %}"},
		budget: BudgetSubject, file: FileSubject, line: 1, template: true},
	{name: "rendered preheader size", parts: map[string]string{FilePreheader: "{% for i in (1..2000) %}x{% endfor %}"},
		budget: BudgetPreheader, file: FilePreheader, line: 1, template: true},
	{name: "rendered text size", parts: map[string]string{FileText: "{% for i in (1..3000) %}" + strings.Repeat("y", 100) + "{% endfor %}"},
		budget: BudgetText, file: FileText, line: 1, template: true},
	{name: "time", parts: map[string]string{FileHTML: "<p>\n{% for i in (1..10000000) %}{% endfor %}"},
		lim: Budgets{Iterations: 50_000_000, Time: 50 * time.Millisecond}, clock: true,
		budget: BudgetTime, file: FileHTML, line: 2, template: true},
	{name: "time on the real clock", parts: map[string]string{FileHTML: "<p>\n{% for i in (1..10000000) %}{% endfor %}"},
		lim:    Budgets{Iterations: 50_000_000, Time: time.Millisecond},
		budget: BudgetTime, file: FileHTML, line: 2, template: true},
	{name: "one recipient's huge content array", parts: map[string]string{FileHTML: "<p>\n{% for i in content.recs.items %}{{ i }}{% endfor %}</p>"},
		items:  200_000,
		budget: BudgetIterations, file: FileHTML, line: 2, template: false},
}

func (h hostile) parse(t *testing.T, contentURL string) *Template {
	t.Helper()
	files := map[string]string{
		FileManifest: "name: hostile\nversion: 1\n",
		FileSubject:  "Hi {{ customer.first_name }}",
		FileHTML:     "<p>Hi</p>",
		FileText:     "Hi",
	}
	if h.items > 0 {
		files[FileManifest] += "content:\n  recs:\n    url: " + contentURL + "/recs\n"
	}
	for name, src := range h.parts {
		files[name] = src
	}
	return mustFromFiles(t, files)
}

// tickingClock returns a clock that advances 1ms each time it is read.
func tickingClock() func() time.Time {
	var n atomic.Int64
	start := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	return func() time.Time { return start.Add(time.Duration(n.Add(1)) * time.Millisecond) }
}

// sampleHeap samples the bytes of heap objects (live and not yet collected) until the returned
// function is called, which returns the largest rise over the first sample.
func sampleHeap() func() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var peak atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			if v := read(); v > base && v-base > peak.Load() {
				peak.Store(v - base)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		if v := read(); v > base && v-base > peak.Load() {
			peak.Store(v - base)
		}
		return peak.Load()
	}
}

func fallbackTotal() uint64 {
	total := uint64(0)
	for _, n := range ReadCounters().FastFallbacks {
		total += n
	}
	return total
}

// TestBudgets_StopHostileTemplates renders each hostile template on the fast path and with
// liquid: each ends in a *BudgetError naming the budget, file and line, with the heap growing by
// far less than 100 MB at its peak, and the fast path does not hand the breach to liquid. It is
// not parallel: it measures the process's heap.
func TestBudgets_StopHostileTemplates(t *testing.T) {
	srvURL := ""
	var body atomic.Value
	body.Store("{}")
	srv := newContentServer(t, map[string]http.HandlerFunc{"/recs": func(w http.ResponseWriter, r *http.Request) {
		jsonHandler(body.Load().(string))(w, r)
	}})
	srvURL = srv.URL
	for _, h := range hostiles {
		for _, fast := range []bool{true, false} {
			name := h.name + "/liquid"
			if fast {
				name = h.name + "/fast"
			}
			t.Run(name, func(t *testing.T) {
				tpl := h.parse(t, srvURL)
				if fast {
					for _, p := range []*part{tpl.base.subject, tpl.base.preheader, tpl.base.html, tpl.base.text} {
						require.True(t, p == nil || p.prog != nil, "the fast path compiles every part")
					}
				} else {
					tpl = withoutFastPath(tpl)
				}
				if h.items > 0 {
					body.Store(`{"items":[0` + strings.Repeat(",0", h.items-1) + `]}`)
				}
				cfg := RendererConfig{Budgets: h.lim}
				if cfg.Budgets.Time == 0 {
					// The machine running the tests may be busy: the other budgets are the ones
					// under test (TestBudgets_TimeDefaultStopsALongLoop covers the default).
					cfg.Budgets.Time = 20 * time.Second
				}
				if h.clock {
					cfg.Now = tickingClock()
				}
				r := NewRenderer(cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				fallbacks := fallbackTotal()
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				peak := sampleHeap()
				m, err := r.Render(ctx, tpl, RenderData{CustomerID: "c-1", Customer: map[string]any{"first_name": "Ada"}})
				heap := peak()
				runtime.ReadMemStats(&after)

				require.Nil(t, m)
				require.ErrorIs(t, err, ErrBudgetExceeded)
				var re *RenderError
				require.ErrorAs(t, err, &re)
				var be *BudgetError
				require.ErrorAs(t, err, &be)
				require.Equal(t, h.budget, be.Budget, "%v", err)
				require.Equal(t, h.file, be.File, "%v", err)
				require.Equal(t, h.line, be.Line, "%v", err)
				require.Equal(t, h.file, re.File)
				require.Equal(t, h.line, re.Line)
				require.Equal(t, h.template, be.Template, "template fault")
				require.Equal(t, h.template, IsTemplateFault(err))
				require.NoError(t, ctx.Err(), "the budget, not the deadline, stopped it")
				require.Contains(t, err.Error(), "render template hostile: "+h.file+":")
				require.Contains(t, err.Error(), "render budget exceeded")
				allocated := after.TotalAlloc - before.TotalAlloc
				t.Logf("%v; heap peak +%d KB, allocated %d KB", err, heap>>10, allocated>>10)
				require.Less(t, heap, uint64(100<<20), "extra heap at its peak")
				if !raceEnabled { // the race detector's shadow memory inflates allocations
					// Every byte allocated, garbage included, and the reference render that
					// decides Template included: liquid allocates ~0.5 KB per loop iteration.
					require.Less(t, allocated, uint64(200<<20), "allocated bytes")
				}
				if fast {
					require.Equal(t, fallbacks, fallbackTotal(), "the fast path stopped the render itself")
				}
			})
		}
	}
	body.Store("{}")
}

// TestBudgets_TimeDefaultStopsALongLoop: with the defaults, a loop that would run for minutes
// stops on the iteration budget, and with a larger iteration budget on the default time budget.
func TestBudgets_TimeDefaultStopsALongLoop(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: long\nversion: 1\n", FileSubject: "s", FileText: "t",
		FileHTML: "{% for i in (1..1000000000) %}{% endfor %}",
	})
	_, err := NewRenderer(RendererConfig{Budgets: Budgets{Iterations: 1 << 40}}).Render(t.Context(), tpl, customer("c-1", "Ada"))
	var be *BudgetError
	require.ErrorAs(t, err, &be)
	require.Equal(t, BudgetTime, be.Budget)
	require.Equal(t, int64(BudgetTimeDefault), be.Limit)
}

func TestBudgets_ZeroMeansDefaults(t *testing.T) {
	t.Parallel()
	require.Equal(t, Budgets{
		HTML: BudgetHTMLDefault, Text: BudgetTextDefault, Subject: BudgetSubjectDefault, Preheader: BudgetPreheaderDefault,
		Iterations: BudgetIterationsDefault, String: BudgetStringDefault, Items: BudgetItemsDefault, Time: BudgetTimeDefault,
	}, Budgets{}.withDefaults())
	require.Equal(t, Budgets{}.withDefaults(), RendererConfig{Budgets: Budgets{HTML: -1}}.withDefaults().Budgets)
	require.Equal(t, 5, Budgets{HTML: 5}.withDefaults().HTML)
}

func TestBudgets_DoNotStopOrdinaryTemplates(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: ok\nversion: 1\n",
		FileSubject:  "{% for i in (1..100) %}{% endfor %}Hi {{ customer.first_name }}",
		FileHTML:     "{% assign a = (1..100000) | join: \",\" | split: \",\" | uniq %}{{ a.size }} {% capture c %}{% for i in (1..1000) %}<b>{{ i }}</b>{% endfor %}{% endcapture %}{{ c }}",
		FileText:     "{% for i in (1..98000) %}{% endfor %}{{ 'x' | append: 'y' | replace: 'y', 'zz' }}",
	})
	// Only the time budget is raised: a busy machine or the race detector may be slower.
	r := NewRenderer(RendererConfig{Budgets: Budgets{Time: time.Minute}})
	for _, tp := range []*Template{tpl, withoutFastPath(tpl)} {
		m, err := r.Render(t.Context(), tp, customer("c-1", "Ada"))
		require.NoError(t, err)
		require.Equal(t, "Hi Ada", m.Subject)
		require.Len(t, m.HTML, len("100000 ")+9893)
		require.True(t, strings.HasPrefix(m.HTML, "100000 <b>1</b><b>2</b>"), m.HTML[:40])
		require.Equal(t, "xzz", m.Text)
	}
}

func TestFilters_SplitCountsItemsBeforeSplitting(t *testing.T) {
	t.Parallel()
	words := strings.Repeat("word ", 50_000) // 250 KB, 50 000 words, 250 000 runes
	out, err := callFilter(t, "split", words, " ")
	require.NoError(t, err)
	require.Len(t, out, 50_000)
	_, err = callFilter(t, "split", strings.Repeat("a,", 100_000), ",")
	var be *BudgetError
	require.ErrorAs(t, err, &be)
	require.Equal(t, BudgetItems, be.Budget)
	_, err = callFilter(t, "split", strings.Repeat("é", 100_001), "")
	require.ErrorAs(t, err, &be)
	out, err = callFilter(t, "split", strings.Repeat("é", 100_000), "")
	require.NoError(t, err)
	require.Len(t, out, 100_000)
}

func TestBudgetError_Message(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    BudgetError
		want string
	}{
		{BudgetError{Budget: BudgetHTML, Limit: 1 << 20, File: FileHTML, Line: 3}, "html:3: render budget exceeded: the rendered html part is over 1 MB"},
		{BudgetError{Budget: BudgetText, Limit: 256 << 10, File: FileText}, "text: render budget exceeded: the rendered text part is over 256 KB"},
		{BudgetError{Budget: BudgetIterations, Limit: 100000, File: FileHTML, Line: 1}, "html:1: render budget exceeded: loops ran over 100000 iterations"},
		{BudgetError{Budget: BudgetString, Limit: 1000, File: FileHTML, Line: 1}, "html:1: render budget exceeded: a string built by a filter, assign or capture would be over 1000 bytes"},
		{BudgetError{Budget: BudgetItems, Limit: 10, File: FileHTML, Line: 1}, "html:1: render budget exceeded: an array or range would have over 10 items"},
		{BudgetError{Budget: BudgetTime, Limit: int64(time.Second), File: FileHTML, Line: 1}, "html:1: render budget exceeded: rendering took over 1s"},
	}
	for _, tt := range tests {
		require.True(t, strings.HasPrefix(tt.e.Error(), tt.want), "%q", tt.e.Error())
		require.ErrorIs(t, &tt.e, ErrBudgetExceeded)
	}
	require.False(t, IsTemplateFault(errors.New("other")))
	require.False(t, IsTemplateFault(nil))
}

func TestRender_StopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: ctx\nversion: 1\n", FileSubject: "s", FileText: "t",
		FileHTML: "<p>\n{% for i in (1..90000) %}{% endfor %}</p>",
	})
	for _, tp := range []*Template{tpl, withoutFastPath(tpl)} {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := NewRenderer(RendererConfig{}).Render(ctx, tp, customer("c-1", "Ada"))
		require.ErrorIs(t, err, context.Canceled)
		var re *RenderError
		require.ErrorAs(t, err, &re)
		require.Equal(t, FileHTML, re.File)
		require.NotErrorIs(t, err, ErrBudgetExceeded)
	}
}

func TestRender_TemplateFaultIsRememberedPerVariant(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: v\nversion: 1\nvariants:\n  - {name: a, weight: 1, html: '{% for i in (1..1000000) %}{% endfor %}'}\n  - {name: b, weight: 1}\n",
		FileSubject:  "s",
		FileHTML:     "{% for i in customer.items %}{% endfor %}",
		FileText:     "t",
	})
	r := NewRenderer(RendererConfig{Budgets: Budgets{Iterations: 10}})
	many := make([]any, 20)
	d := RenderData{CustomerID: "c-1", Customer: map[string]any{"items": many}, Campaign: map[string]any{"id": "cmp"}}
	for range 2 {
		d.Variant = "a"
		_, err := r.Render(t.Context(), tpl, d)
		require.True(t, IsTemplateFault(err), "%v", err)
		require.Contains(t, err.Error(), "template.yaml (variant a html):4:")
		d.Variant = "b"
		_, err = r.Render(t.Context(), tpl, d)
		require.ErrorIs(t, err, ErrBudgetExceeded)
		require.False(t, IsTemplateFault(err), "the profile's items, not the template, exceed the budget")
	}
	n := 0
	tpl.faults.Range(func(any, any) bool { n++; return true })
	require.Equal(t, 2, n, "one verdict per variant")
}

func TestFilters_PanicsBecomeErrors(t *testing.T) {
	t.Parallel()
	// liquid's truncate builds a regexp with the length, which Go's regexp refuses past 1000.
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: p\nversion: 1\n", FileSubject: "s", FileText: "t",
		FileHTML: "<p>\n{{ customer.first_name | truncate: 5000 }}</p>",
	})
	for _, tp := range []*Template{tpl, withoutFastPath(tpl)} {
		_, err := NewRenderer(RendererConfig{}).Render(t.Context(), tp, customer("c-1", "Ada"))
		var re *RenderError
		require.ErrorAs(t, err, &re)
		require.Equal(t, 2, re.Line)
		require.Contains(t, err.Error(), "truncate")
	}
}

func TestUniq_MatchesLiquidWithoutQuadraticWork(t *testing.T) {
	t.Parallel()
	liquidUniq := func(a []any) []any {
		out, err := callFilter(t, "uniq", a)
		require.NoError(t, err)
		return out.([]any)
	}
	m1 := map[string]any{"a": 1.0, "b": []any{"x"}}
	m2 := map[string]any{"b": []any{"x"}, "a": 1.0}
	m3 := map[string]any{"a": 2.0, "b": []any{"x"}}
	for _, a := range [][]any{
		{}, {"a", "b", "a", 1.0, 1.0, true, true, "1"},
		{m1, m2, m3, m1},
		{[]any{1.0, "x"}, []any{1.0, "x"}, []any{"x", 1.0}},
		{0.0, math.Copysign(0, -1), 2, 2.0},
	} {
		require.Equal(t, liquidUniqOriginal(a), liquidUniq(a), "%v", a)
	}
	big := make([]any, 100_000)
	for i := range big {
		big[i] = strings.Repeat("x", i%7)
	}
	require.Len(t, liquidUniq(big), 7)
}

// liquidUniqOriginal is liquid v1.6's uniq, for comparison.
func liquidUniqOriginal(a []any) any {
	out, err := callOriginal("uniq", a)
	if err != nil {
		return err
	}
	return out
}

// callFilter calls the standard filter name as the renderers register it (guarded, at the
// budget defaults).
func callFilter(t *testing.T, name string, recv any, args ...any) (any, error) {
	t.Helper()
	fn, ok := standardFilters()[name]
	require.True(t, ok, name)
	return guard(name, fn, Budgets{}.withDefaults(), preChecks[name])(recv, args...)
}

// callOriginal calls liquid's own standard filter name.
func callOriginal(name string, recv any, args ...any) (any, error) {
	m := filterMap{}
	filters.AddStandardFilters(m)
	return values.Call(reflect.ValueOf(m[name]), append([]any{recv}, args...))
}
