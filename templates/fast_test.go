package templates

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/money"
)

// fastBindings are the bindings the fast path and liquid are compared on.
func fastBindings() map[string]any {
	return map[string]any{
		"customer": map[string]any{
			"customer_id": "c 1&x", "first_name": `ada "<b>" & 'co'`, "tier": "", "age": 36.0, "score": 2.5,
			"vip": true, "tags": []any{"a", "<b>", 3.0, nil, true}, "empty": []any{}, "none": nil,
			"address": map[string]any{"city": "Paris", "zip": "75001"}, "price": 4900.0, "currency": "eur",
			"spaced": "  padded  ", "when": "2025-03-01T09:00:00Z", "n": 3, "zero": 0,
		},
		"content": map[string]any{
			"recs":  map[string]any{"items": []any{map[string]any{"name": "Linen <shirt>", "price_minor": 4900.0, "currency": "EUR", "url": "https://x.example/a?b=1&c=2"}, map[string]any{"name": "Tote", "price_minor": 1999.0}}},
			"offer": map[string]any{"code": "HELLO20", "percent_off": 20.0},
			"empty": map[string]any{},
		},
		"campaign":        map[string]any{"id": "spring/1"},
		"variant":         "b",
		"unsubscribe_url": "https://t.example/u?a=1&b=2",
		"now":             time.Date(2025, 3, 1, 9, 5, 7, 0, time.UTC),
		"list":            []string{"x", "y", "z"},
		"ints":            []int{3, 1, 2},
	}
}

// fastCases are Liquid sources that exercise what the fast path mirrors, quirks included.
var fastCases = []string{
	// comparisons, natively: numbers of both kinds, strings, nil, other types
	"{% if customer.price > customer.score %}a{% endif %}{% if customer.age >= 36 %}b{% endif %}{% if customer.n <= 2.5 %}c{% endif %}{% if customer.n < customer.age %}d{% endif %}",
	"{% if customer.tier == '' %}e{% endif %}{% if customer.none == customer.missing %}f{% endif %}{% if customer.currency != 'eur' %}g{% endif %}{% unless customer.zero > 0 %}h{% endunless %}",
	"{% if customer.tags > 1 %}i{% endif %}{% if customer.first_name < 'b' %}j{% endif %}{% if customer.vip == customer.vip %}k{% endif %}{% if customer.address >= customer.address %}l{% endif %}",
	"{% for p in content.recs.items %}{% if p.price_minor > 2000 %}{{ p.name }}{% endif %}{% endfor %}{% if customer.age != 3 %}m{% endif %}",
	// forloop: one object serves a loop whose body only reads it; one kept by an assign is its own.
	"{% for i in (1..3) %}{% if forloop.first %}{% assign f = forloop %}{% endif %}{% endfor %}{{ f.index }} {{ f.last }}",
	"{% for a in (1..2) %}{% for b in (1..3) %}{{ forloop.index }}/{{ forloop.rindex }}{% if forloop.last %};{% endif %}{% endfor %}{{ forloop.index }}{{ forloop.first }}|{% endfor %}",
	"{% for i in (1..4) %}{% cycle 'a', 'b' %}{{ forloop.index0 }}{% unless forloop.last %},{% endunless %}{% endfor %}",
	// the shared forloop read field by field, whole, through filters and by liquid's own expressions
	"{% for t in list %}{{ forloop.size }} {{ forloop | size }} {{ forloop.missing }}-{{ forloop.index.size }} {{ forloop.length | plus: forloop.index }} {{ forloop.rindex0 }}{{ forloop.index0 }}{% if forloop.index > 1 and forloop.last %}!{% endif %}{% endfor %}",
	"{% for t in list %}{% for u in ints limit: 1 %}{{ forloop.length }}{% endfor %}{{ forloop.length }}{% cycle 'p', 'q' %}{% endfor %}",
	"plain text only",
	"",
	"Hi {{ customer.first_name }}!",
	"{{ customer.first_name | capitalize }} {{ customer.tier | default: 'member' }} {{ customer.none | default: 'x' }}",
	"{{ customer.vip }} {{ customer.age }} {{ customer.score }} {{ customer.n }} {{ customer.zero }} {{ customer.none }}-{{ missing.deep.path }}",
	"{{ customer.tags }}|{{ customer.address }}|{{ customer.empty }}|{{ list }}|{{ ints }}",
	"{{ customer.tags.size }} {{ customer.tags.first }} {{ customer.tags.last }} {{ customer.address.size }} {{ customer.first_name.size }} {{ content.empty.size }}",
	"{{ now }} {{ now | date: '%B %-d, %Y %H:%M' }} {{ now | date: '%H:%M %Z', 'Europe/Paris' }} {{ now | date }} {{ customer.when | date: '%Y' }}",
	"{{ customer.price | money: customer.currency }} {{ customer.price | money }} {{ 1999 | money: 'JPY' }} {{ customer.none | money: customer.none }} {{ '12.5' | money: 'EUR' }}",
	"{{ customer.customer_id | url_encode }} {{ 42 | url_encode }} {{ customer.none | capitalize }} {{ customer.age | upcase }} {{ customer.spaced | strip }}|",
	"{{ customer.first_name | escape }} {{ customer.first_name | raw }} {{ customer.tags | raw }} {{ customer.first_name | upcase: 'x' }}",
	"{{ customer.first_name | capitalize: 1, 2 }}",
	"{{ customer.tags | join: ', ' }} {{ customer.first_name | truncate: 5 }} {{ customer.age | plus: 1 }} {{ customer.tags | size }}",
	"a  {{- customer.first_name -}}  b",
	"a {{ customer.first_name -}}   {{- ' ' -}}  b {{- '' }}  c",
	"{{ customer.first_name -}}{{ '  ' }}  x",
	"x  \n {%- if customer.vip -%} \n yes \n {%- else -%} no {%- endif -%} \n y",
	"{% if customer.vip and customer.age > 30 %}old vip{% elsif customer.vip %}vip{% else %}no{% endif %}",
	"{% unless customer.none %}none is nil{% endunless %}{% unless customer.vip %}x{% else %}vip{% endunless %}",
	"{% if customer.tags contains '<b>' %}has{% endif %}{% if customer.tier == '' %}empty tier{% endif %}{% if customer.empty %}truthy empty{% endif %}",
	"{% case customer.tier %}{% when 'gold', '' %}gold or empty{% when 'silver' %}silver{% else %}other{% endcase %}",
	"{% case customer.age %}{% when 1 %}one{% else %}else{% endcase %}{% case customer.none %}{% when 'x' %}x{% endcase %}",
	"{% for t in customer.tags %}[{{ t }}]{% endfor %}",
	"{% for t in customer.tags limit: 2 %}{{ t }}{% endfor %}|{% for t in customer.tags offset: 1 limit: 2 %}{{ t }}{% endfor %}|{% for t in customer.tags reversed offset: 1 %}{{ t }}{% endfor %}",
	"{% for t in customer.empty %}x{% else %}empty{% endfor %}|{% for t in customer.none %}x{% else %}nil{% endfor %}|{% for t in customer.tags limit: 0 %}x{% else %}limited{% endfor %}",
	"{% for t in list %}{{ forloop.index }}/{{ forloop.length }}{% if forloop.first %}F{% endif %}{% if forloop.last %}L{% endif %}{{ t }} {% endfor %}",
	"{% for t in ints %}{% cycle 'odd', 'even' %}{{ t }}{% endfor %}",
	"{% for t in customer.tags %}{% if t == '<b>' %}{% break %}{% endif %}{{ t }}{% endfor %}|{% for t in customer.tags %}{% if t == '<b>' %}{% continue %}{% endif %}{{ t }}{% endfor %}",
	"{% for i in (1..4) %}{{ i }}{% endfor %}{% for i in ints %}{% for t in list %}{{ i }}{{ t }}{% endfor %}{% endfor %}",
	"{% assign t = 'keep' %}{% for t in list %}{{ t }}{% endfor %}{{ t }}{{ forloop }}",
	"{% for t in list %}  {{- t -}}  {% endfor %}.",
	"{% for item in content.recs.items %}\n<li><a href=\"{{ item.url }}\">{{ item.name }}</a>{% if item.price_minor %} {{ item.price_minor | money: item.currency }}{% endif %}</li>\n{%- endfor %}",
	"{% assign n = customer.first_name | upcase %}{{ n }}{% assign x = customer.tags %}{{ x.size }}",
	"{% capture greeting %}Hi <b>{{ customer.first_name }}</b>{% endcapture %}{{ greeting }}|{{ greeting | upcase }}",
	"{% capture c -%}  x  {%- endcapture -%}  [{{ c }}]",
	"{% raw %}{{ customer.first_name }}{% endraw %}{% comment %}{{ hidden }}{% endcomment %}after",
	"{{ customer.first_name | append: '<i>' }} {{ customer.first_name | prepend: 1 }}",
	"{{ content.offer.code }} {{ content.offer.percent_off }}% {{ content['offer'].code }} {{ content.offer['code'] }}",
	"{{ variant }} {{ unsubscribe_url }} {{ campaign.id | url_encode }}",
	"{% if true %}{{ 'a' }}{% endif %}{{ true }} {{ nil }} {{ 1.0 }} {{ -3 }}",
	"{% include 'x' %}",
	"{% tablerow t in list %}{{ t }}{% endtablerow %}",
	"{% for t in customer.address %}{{ t }}{% endfor %}",
	"{{ customer.first_name | nosuchfilter }}",
	"{% break %}after",
	"{{ customer.age | date: '%Y' }}",
	"{{ now | date: '%Y', 'Mars/Olympus' }}",
	"{{ customer.tags | money: 'EUR' }}",
}

// both is a part rendered by the fast path and by liquid.
type both struct {
	p         *part // nil when src does not parse
	fast      string
	fastOK    bool
	fastErr   error // a *BudgetError, or a *fallback
	slow      string
	slowErr   error
	slowPanic any
}

// testEnv renders at the budget defaults in English.
var testEnv = sync.OnceValue(func() *env { return newEnv(Budgets{}.withDefaults(), money.Locale{}) })

// testBudget is a message's budget at the defaults.
func testBudget() *budget {
	return newBudget(context.Background(), Budgets{}.withDefaults(), time.Now)
}

// compareBudget is the budget renderBoth gives both paths: the defaults, but with a time budget
// no loaded machine reaches, so that the size and iteration budgets alone decide where a render
// stops and the two paths can be compared (liquid is several times slower than the fast path, so
// with the 1 s default a loaded CI machine could stop liquid on time where the fast path stopped on
// iterations).
func compareBudget() *budget {
	return newBudget(context.Background(), Budgets{Time: time.Hour}.withDefaults(), time.Now)
}

// renderPart renders p under the budget defaults.
func renderPart(p *part, bindings map[string]any) (string, error) {
	return p.render(testEnv(), bindings, testBudget(), BudgetHTML, BudgetHTMLDefault)
}

// renderBoth renders src with the fast path and with liquid.
func renderBoth(t testing.TB, src string, html bool) both {
	t.Helper()
	var b both
	c := &compiled{}
	if b.p = c.parse("html", src, 1, html); b.p == nil {
		return b
	}
	if b.p.prog != nil {
		out, err := renderFast(b.p.prog, fastBindings(), testEnv(), html, compareBudget(), BudgetHTML, BudgetHTMLDefault)
		b.fast, b.fastOK, b.fastErr = out, err == nil, err
	}
	func() {
		defer func() { b.slowPanic = recover() }()
		out, err := b.p.renderLiquid(testEnv(), fastBindings(), compareBudget(), BudgetHTML, BudgetHTMLDefault)
		if err != nil {
			b.slowErr = err
			return
		}
		b.slow = out
	}()
	return b
}

func TestFast_MatchesLiquid(t *testing.T) {
	t.Parallel()
	fastCount := 0
	for i, src := range fastCases {
		for _, html := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/html=%v", i, html), func(t *testing.T) {
				b := renderBoth(t, src, html)
				require.NotNil(t, b.p, "parse %q", src)
				if !b.fastOK {
					return
				}
				fastCount++
				require.Nil(t, b.slowPanic, "liquid panicked where the fast path rendered: %q", src)
				require.NoError(t, b.slowErr, "liquid failed where the fast path rendered: %q", src)
				require.Equal(t, b.slow, b.fast, "source %q", src)
			})
		}
	}
	require.Greater(t, fastCount, 2*len(fastCases)*3/4, "the fast path should cover most cases")
}

func TestFast_CoversTheExamplesAndTheBenchmark(t *testing.T) {
	t.Parallel()
	tpl, err := Load("examples/welcome")
	require.NoError(t, err)
	bench := benchTemplate(t, "http://127.0.0.1:1")
	for _, tp := range []*Template{tpl, bench} {
		for _, p := range []*part{tp.base.subject, tp.base.preheader, tp.base.html, tp.base.text} {
			if p != nil {
				require.NotNil(t, p.prog, "%s: a part falls back to liquid", tp.name)
			}
		}
		for _, s := range tp.sources {
			require.NotNil(t, s.url.prog, "%s: source %s url falls back to liquid", tp.name, s.name)
		}
		// Byte for byte what liquid renders (content at the fallbacks: nothing listens).
		r := NewRenderer(RendererConfig{RetryBackoff: time.Millisecond, Getenv: func(string) string { return "http://127.0.0.1:1" }})
		d := customer("c-1", `<ada> & "co"`)
		fast, err := r.Render(t.Context(), tp, d)
		require.NoError(t, err)
		slow, err := r.Render(t.Context(), withoutFastPath(tp), d)
		require.NoError(t, err)
		require.Equal(t, slow.Subject, fast.Subject)
		require.Equal(t, slow.Preheader, fast.Preheader)
		require.Equal(t, slow.HTML, fast.HTML)
		require.Equal(t, slow.Text, fast.Text)
	}
}

func TestFast_FallsBackToLiquidForErrors(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: x\nversion: 1\n",
		FileSubject:  "s",
		FileHTML:     "<p>\n{{ now | date: '%Y', 'Mars/Olympus' }}</p>",
		FileText:     "t",
	})
	_, err := NewRenderer(RendererConfig{}).Render(t.Context(), tpl, customer("c-1", "ada"))
	require.ErrorContains(t, err, "html:2:")
	require.ErrorContains(t, err, "unknown time zone")
	require.NotContains(t, err.Error(), autoescapeFilter)
}

// FuzzFast_MatchesLiquid renders random templates with the fast path and with liquid: where the
// fast path renders, liquid renders the same bytes; where it stops on a budget, liquid stops on
// the same budget.
func FuzzFast_MatchesLiquid(f *testing.F) {
	for _, src := range fastCases {
		f.Add(src, false)
		f.Add(src, true)
	}
	for _, h := range hostiles {
		for _, src := range h.parts {
			if !strings.Contains(src, "content.") {
				f.Add(src, true)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src string, html bool) {
		if len(src) > 2000 || strings.Contains(src, "include") {
			return
		}
		defer func() {
			// liquid's parser panics on some inputs; that is not the fast path's concern.
			if r := recover(); r != nil && !strings.Contains(fmt.Sprint(r), "fast") {
				t.Skip()
			}
		}()
		b := renderBoth(t, src, html)
		if b.p == nil {
			return
		}
		var be *BudgetError
		if errors.As(b.fastErr, &be) && be.Budget != BudgetTime {
			// A budget the fast path hit, liquid hits too.
			var le *BudgetError
			if !errors.As(b.slowErr, &le) || le.Budget != be.Budget {
				t.Fatalf("fast path stopped %q on %v, liquid: %v %v", src, be, b.slowErr, b.slowPanic)
			}
			return
		}
		if !b.fastOK {
			return
		}
		if b.slowPanic != nil || b.slowErr != nil {
			t.Fatalf("fast path rendered %q but liquid failed: %v %v", src, b.slowErr, b.slowPanic)
		}
		if b.fast != b.slow {
			t.Fatalf("source %q:\nfast   %q\nliquid %q", src, b.fast, b.slow)
		}
	})
}

func TestFast_ConcurrentRendersDoNotShareState(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: c\nversion: 1\n",
		FileSubject:  "{{ customer.first_name }}",
		FileHTML:     "{% assign n = customer.first_name | upcase %}{% capture c %}<i>{{ n }}</i>{% endcapture %}{% for i in (1..3) %}{{ c }}{{ forloop.index }}{% endfor %}",
		FileText:     "{{ customer.first_name | capitalize }}",
	})
	r := NewRenderer(RendererConfig{})
	want := func(name string) string {
		up := strings.ToUpper(name)
		return "<i>" + up + "</i>1<i>" + up + "</i>2<i>" + up + "</i>3"
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("n%d-%d", g, i)
				m, err := r.Render(t.Context(), tpl, customer("c", name))
				if err != nil {
					errs <- err
					return
				}
				if m.HTML != want(name) || m.Subject != name {
					errs <- fmt.Errorf("got %q / %q for %s", m.HTML, m.Subject, name)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestFast_DateOfTheStringNowIsLeftToLiquid(t *testing.T) {
	t.Parallel()
	before := strconv.Itoa(time.Now().Year())
	b := renderBoth(t, "{{ 'now' | date: '%Y' }}", true)
	after := strconv.Itoa(time.Now().Year())
	require.NotNil(t, b.p)
	require.False(t, b.fastOK, "the fast path must not read the wall clock itself")
	require.NoError(t, b.slowErr)
	require.Contains(t, []string{before, after}, b.slow)
}
