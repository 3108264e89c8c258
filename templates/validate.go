package templates

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/osteele/liquid/parser"

	"github.com/tailor-email/tailor/internal/suggest"
)

// Limits of mail clients that Validate warns about.
const (
	// GmailClipSize is the size of html over which Gmail clips a message ("[Message clipped]"),
	// hiding the rest, often the unsubscribe link.
	GmailClipSize = 102 << 10
	// SubjectWarnLength is the subject length (in characters) over which inboxes cut it off.
	SubjectWarnLength = 150
)

// ValidateConfig configures Validate. Zero values mean defaults.
type ValidateConfig struct {
	// Sample is a representative profile (customer.*); when nil, customer fields are not checked.
	Sample map[string]any
	// Budgets bound the sample render; give it the RendererConfig.Budgets campaigns render with.
	// Default: the budget defaults.
	Budgets Budgets
}

// Report is what Validate found.
type Report struct {
	// Errors make a template unfit to publish; each is a *SyntaxError naming the file and line
	// (a budget breach of the sample render unwraps to its *BudgetError).
	Errors []error
	// Warnings do not fail validation: the template works, but mail clients may hurt its
	// recipients (clipped html, cut subjects, images without alt text, links without https).
	Warnings []Warning
}

// Warning is a problem Validate reports without failing: File inside the template folder and
// Line (0 when the warning is about rendered output rather than a place in the source).
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("%s:%d: warning: %s", w.File, w.Line, w.Msg)
	}
	return fmt.Sprintf("%s: warning: %s", w.File, w.Msg)
}

// Validate checks the template folder dir without fetching anything. Its Report's Errors (none
// when the template may be published), each a *SyntaxError naming the file and line, are:
//
//   - Liquid syntax errors in every part (and inline variant parts and source URLs);
//   - the manifest's schema (unknown fields, durations, on_failure, variant weights, locale);
//   - unknown filters;
//   - references to customer fields that neither cfg.Sample nor the manifest defaults have, and
//     to content sources the manifest does not declare;
//   - run-time errors when each part (of each variant) is rendered for cfg.Sample, with every
//     content source at its fallback, under cfg.Budgets: a breach is an error with file and line.
//
// Its Warnings are: an html part rendering over GmailClipSize, a subject over SubjectWarnLength
// characters (both for the sample), and, in the html source, images without alt and links
// (a href) with plain http://.
func Validate(dir string, cfg ValidateConfig) Report {
	files, err := readFolder(dir)
	if err != nil {
		return Report{Errors: []error{err}}
	}
	c := compile(files)
	rep := Report{Errors: c.errs}
	if c.man == nil {
		return rep
	}
	known := map[string]bool{}
	for k := range cfg.Sample {
		known[k] = true
	}
	for k := range c.man.Defaults {
		known[k] = true
	}
	sources := map[string]bool{}
	for name := range c.man.Content {
		sources[name] = true
	}
	for _, ls := range c.parsed {
		for _, ref := range scanRefs(ls) {
			switch ref.root {
			case "customer":
				if cfg.Sample != nil && !known[ref.field] {
					rep.Errors = append(rep.Errors, &SyntaxError{File: ls.file, Line: ref.line,
						Msg: unknownMsg("customer", ref.field, keys(known), "the sample profile and the manifest defaults")})
				}
			case "content":
				if !sources[ref.field] {
					rep.Errors = append(rep.Errors, &SyntaxError{File: ls.file, Line: ref.line,
						Msg: unknownMsg("content", ref.field, keys(sources), "the manifest's content sources")})
				}
			}
		}
		if ls.html {
			rep.Warnings = append(rep.Warnings, htmlWarnings(ls)...)
		}
	}
	if len(rep.Errors) == 0 && c.t != nil {
		errs, warns := renderSample(c.t, cfg)
		rep.Errors = append(rep.Errors, errs...)
		rep.Warnings = append(rep.Warnings, warns...)
	}
	return rep
}

func unknownMsg(root, field string, candidates []string, where string) string {
	msg := fmt.Sprintf("unknown variable %s.%s", root, field)
	if s := suggest.Closest(field, candidates); s != "" {
		return msg + fmt.Sprintf(" (did you mean %s.%s?)", root, s)
	}
	return msg + " (not in " + where + ")"
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// renderSample renders every part of every variant for cfg.Sample with content at the fallbacks,
// each variant as one message under cfg.Budgets.
func renderSample(t *Template, cfg ValidateConfig) (errs []error, warns []Warning) {
	r := NewRenderer(RendererConfig{Budgets: cfg.Budgets})
	lim := r.cfg.Budgets
	e := r.env(t.locale)
	variants := t.variants
	if len(variants) == 0 {
		variants = []variant{{parts: t.base}}
	}
	seen := map[*part]bool{}
	for _, v := range variants {
		bindings := t.bindings(v, applyDefaults(cfg.Sample, t.defaults), map[string]any{"id": "validate"}, time.Now(),
			"https://example.com/unsubscribe", "https://example.com/preferences")
		bindings["content"] = t.fallbacks()
		b := newBudget(context.Background(), lim, time.Now)
		for _, p := range v.parts.list(lim) {
			if p.part == nil || seen[p.part] {
				continue
			}
			seen[p.part] = true
			out, err := p.render(e, bindings, b, p.kind, p.max)
			if err != nil {
				errs = append(errs, sampleError(p.part, err))
				continue
			}
			switch p.kind {
			case BudgetHTML:
				if len(out) > GmailClipSize {
					warns = append(warns, Warning{File: p.file, Msg: fmt.Sprintf(
						"the html part renders to %d KB for the sample; Gmail clips html over %d KB and hides the rest, unsubscribe link included (shorten it, link to long content)",
						(len(out)+1023)>>10, GmailClipSize>>10)})
				}
			case BudgetSubject:
				if n := utf8.RuneCountInString(strings.Join(strings.Fields(out), " ")); n > SubjectWarnLength {
					warns = append(warns, Warning{File: p.file, Msg: fmt.Sprintf(
						"the subject renders to %d characters for the sample; inboxes cut subjects off long before %d (keep it under 60)", n, SubjectWarnLength)})
				}
			}
		}
	}
	return errs, warns
}

// sampleError reports a failed sample render of p as a *SyntaxError.
func sampleError(p *part, err error) error {
	var be *BudgetError
	if errors.As(stopCause(err), &be) {
		return &SyntaxError{File: be.File, Line: be.Line, Msg: "rendering the sample: " + be.msg(), Err: be}
	}
	se := &SyntaxError{File: p.file, Msg: "rendering the sample: " + undoRewrite(err.Error()), Err: err}
	var le parser.Error
	if errors.As(err, &le) {
		msg := le.Error()
		if c := le.Cause(); c != nil {
			msg = c.Error()
		}
		se.File, se.Line, se.Msg = cmpOr(le.Path(), p.file), le.LineNumber(), "rendering the sample: "+undoRewrite(msg)
	}
	return se
}

// htmlPatterns are htmlWarnings' regexps, compiled when Validate first needs them.
var htmlPatterns = sync.OnceValue(func() (p struct{ img, alt, link *regexp.Regexp }) {
	p.img = regexp.MustCompile(`(?is)<img\b[^>]*>`)
	p.alt = regexp.MustCompile(`(?i)\salt\s*=`)
	p.link = regexp.MustCompile(`(?is)<a\b[^>]*?\shref\s*=\s*["']?\s*http://`)
	return p
})

// htmlWarnings finds, in the html source ls, images without alt text and links with plain http.
// Liquid is blanked out first, so an alt="{{ name }}" counts and a URL from data is not judged.
func htmlWarnings(ls liquidSource) []Warning {
	src := blankLiquid(ls.src)
	lineAt := func(i int) int { return ls.line + strings.Count(src[:i], "\n") }
	var warns []Warning
	re := htmlPatterns()
	for _, m := range re.img.FindAllStringIndex(src, -1) {
		if !re.alt.MatchString(src[m[0]:m[1]]) {
			warns = append(warns, Warning{File: ls.file, Line: lineAt(m[0]),
				Msg: `image without alt text: screen readers and mail clients that block images show nothing (add alt="..."; alt="" for decoration)`})
		}
	}
	for _, m := range re.link.FindAllStringIndex(src, -1) {
		warns = append(warns, Warning{File: ls.file, Line: lineAt(m[0]),
			Msg: "link without https: mail clients warn about or rewrite http:// links (use https://)"})
	}
	return warns
}

// blankLiquid replaces every Liquid token of src by spaces, newlines kept.
func blankLiquid(src string) string {
	b := []byte(src)
	off := 0
	for _, tok := range parser.Scan(src, parser.SourceLoc{}, nil) {
		if tok.Type == parser.ObjTokenType || tok.Type == parser.TagTokenType {
			for i := off; i < off+len(tok.Source); i++ {
				if b[i] != '\n' {
					b[i] = ' '
				}
			}
		}
		off += len(tok.Source)
	}
	return string(b)
}

// knownFilters are the filters the engines define: liquid's standard ones plus ours.
var knownFilters = []string{
	"abs", "append", "capitalize", "ceil", "compact", "concat", "date", "default", "divided_by",
	"downcase", "escape", "escape_once", "first", "floor", "inspect", "join", "json", "last",
	"lstrip", "map", "minus", "modulo", "money", "newline_to_br", "plus", "prepend", "raw", "remove",
	"remove_first", "replace", "replace_first", "reverse", "round", "rstrip", "size", "slice",
	"sort", "sort_natural", "split", "strip", "strip_html", "strip_newlines", "times", "truncate",
	"truncatewords", "type", "uniq", "upcase", "url_decode", "url_encode",
}

var (
	filterRef = regexp.MustCompile(`\|\s*([A-Za-z_][\w-]*)`)
	varRef    = regexp.MustCompile(`(?:^|[^\w.\]])(customer|content)\.([A-Za-z_][\w-]*)`)
)

// checkFilters reports filters the engines do not define; liquid only notices them when a
// message is rendered, and then every message of the campaign would fail.
func checkFilters(file string, line int, src string) []error {
	var errs []error
	for _, tok := range liquidTokens(src, line) {
		for _, m := range filterRef.FindAllStringSubmatchIndex(tok.text, -1) {
			name := tok.text[m[2]:m[3]]
			if !slices.Contains(knownFilters, name) {
				msg := fmt.Sprintf("unknown filter %q", name)
				if s := suggest.Closest(name, knownFilters); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				errs = append(errs, &SyntaxError{File: file, Line: tok.lineAt(m[0]), Msg: msg})
			}
		}
	}
	return errs
}

type ref struct {
	root, field string
	line        int
}

// scanRefs finds customer.X and content.X references in the Liquid of ls.
func scanRefs(ls liquidSource) []ref {
	var refs []ref
	for _, tok := range liquidTokens(ls.src, ls.line) {
		for _, m := range varRef.FindAllStringSubmatchIndex(tok.text, -1) {
			refs = append(refs, ref{root: tok.text[m[2]:m[3]], field: tok.text[m[4]:m[5]], line: tok.lineAt(m[2])})
		}
	}
	return refs
}

// codeToken is the code of one {{ }} or {% %} token with its string literals blanked out
// (newlines kept), so that matches inside literals are ignored and offsets map to lines.
type codeToken struct {
	text string
	line int
}

func (t codeToken) lineAt(offset int) int { return t.line + strings.Count(t.text[:offset], "\n") }

func liquidTokens(src string, line int) []codeToken {
	var out []codeToken
	depth := 0
	for _, tok := range parser.Scan(src, parser.SourceLoc{LineNo: line}, nil) {
		switch tok.Type {
		case parser.TagTokenType:
			switch tok.Name {
			case "raw", "comment":
				depth++
				continue
			case "endraw", "endcomment":
				depth--
				continue
			}
		case parser.ObjTokenType:
		default:
			continue
		}
		if depth == 0 {
			out = append(out, codeToken{text: blankStrings(tok.Source), line: tok.SourceLoc.LineNo})
		}
	}
	return out
}

func blankStrings(s string) string {
	b := []byte(s)
	var quote byte
	for i, c := range b {
		switch {
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0 && c != '\n':
			b[i] = ' '
		}
	}
	return string(b)
}
