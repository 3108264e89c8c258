package templates

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/osteele/liquid/parser"

	"github.com/tailor-email/tailor/internal/suggest"
)

// Validate checks the template folder dir without fetching anything and returns every problem
// found (nil when there is none), each a *SyntaxError naming the file and line:
//
//   - Liquid syntax errors in every part (and inline variant parts and source URLs);
//   - the manifest's schema (unknown fields, durations, on_failure, variant weights);
//   - unknown filters;
//   - references to customer fields that neither sample nor the manifest defaults have, and to
//     content sources the manifest does not declare;
//   - run-time errors when each part (of each variant) is rendered for sample, with every
//     content source at its fallback.
//
// sample is a representative profile (customer.*); when it is nil, customer fields are not checked.
func Validate(dir string, sample map[string]any) []error {
	files, err := readFolder(dir)
	if err != nil {
		return []error{err}
	}
	c := compile(files)
	errs := c.errs
	if c.man == nil {
		return errs
	}
	known := map[string]bool{}
	for k := range sample {
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
				if sample != nil && !known[ref.field] {
					errs = append(errs, &SyntaxError{File: ls.file, Line: ref.line,
						Msg: unknownMsg("customer", ref.field, keys(known), "the sample profile and the manifest defaults")})
				}
			case "content":
				if !sources[ref.field] {
					errs = append(errs, &SyntaxError{File: ls.file, Line: ref.line,
						Msg: unknownMsg("content", ref.field, keys(sources), "the manifest's content sources")})
				}
			}
		}
	}
	if len(errs) == 0 && c.t != nil {
		errs = append(errs, renderSample(c.t, sample)...)
	}
	return errs
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

// renderSample renders every part of every variant for sample with content at the fallbacks.
func renderSample(t *Template, sample map[string]any) []error {
	content := map[string]any{}
	for _, s := range t.sources {
		content[s.name] = s.fallback
	}
	variants := t.variants
	if len(variants) == 0 {
		variants = []variant{{parts: t.base}}
	}
	var errs []error
	seen := map[*part]bool{}
	for _, v := range variants {
		bindings := map[string]any{
			"customer":        applyDefaults(sample, t.defaults),
			"campaign":        map[string]any{"id": "validate"},
			"variant":         v.name,
			"unsubscribe_url": "https://example.com/unsubscribe",
			"preferences_url": "https://example.com/preferences",
			"now":             time.Now(),
			"content":         content,
		}
		for _, p := range []struct {
			file string
			tpl  *part
		}{
			{FileSubject, v.parts.subject}, {FilePreheader, v.parts.preheader},
			{FileHTML, v.parts.html}, {FileText, v.parts.text},
		} {
			if p.tpl == nil || seen[p.tpl] {
				continue
			}
			seen[p.tpl] = true
			if _, err := p.tpl.render(bindings); err != nil {
				msg := err.Error()
				if c := err.Cause(); c != nil {
					msg = c.Error()
				}
				file := cmpOr(err.Path(), p.file)
				errs = append(errs, &SyntaxError{File: file, Line: err.LineNumber(), Msg: "rendering the sample: " + undoRewrite(msg)})
			}
		}
	}
	return errs
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
