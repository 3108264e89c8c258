package templates

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"

	"github.com/tailor-email/tailor/internal/suggest"
)

// File names inside a template folder.
const (
	FileManifest  = "template.yaml"
	FileSubject   = "subject"
	FilePreheader = "preheader"
	FileHTML      = "html"
	FileText      = "text"
)

// Source defaults, used when the manifest leaves the field out.
const (
	SourceTimeoutDefault  = 2 * time.Second
	SourceCacheTTLDefault = 60 * time.Second
	SourceRetriesDefault  = 1
	SourceBodyLimit       = 1 << 20 // bytes; a larger response is a failure
	// MaxPartSize bounds each Liquid file of a template (subject, preheader, html, text and the
	// files variants name): an email is at most a few hundred KB, and mail clients clip longer
	// ones (Gmail at 102 KB).
	MaxPartSize = 512 << 10
	// MaxManifestSize bounds template.yaml.
	MaxManifestSize = 64 << 10
)

// On-failure policies of a content source.
const (
	OnFailureFallback = "fallback"
	OnFailureSkip     = "skip_recipient"
)

// SyntaxError reports a template that cannot be parsed: File is the file inside the template
// folder (template.yaml for the manifest), Line is 1-based (0 when unknown). Validate also reports
// a failed sample render as a SyntaxError; Err is then the cause (e.g. a *BudgetError).
type SyntaxError struct {
	File string
	Line int
	Msg  string
	Err  error // nil for parse errors
}

// Unwrap returns Err.
func (e *SyntaxError) Unwrap() error { return e.Err }

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Template is a parsed template folder. It is immutable after Load or FromFiles and may be
// rendered concurrently by any number of goroutines.
type Template struct {
	name     string
	version  int
	files    map[string]string
	defaults map[string]any
	sources  []*source // sorted by name
	base     parts
	variants []variant
	weights  int       // sum of variant weights
	locale   string    // the manifest's locale; "" for en
	faults   *sync.Map // faultKey -> bool: whether a variant breaches a budget with no recipient data
}

// parts are the compiled Liquid parts of a message; preheader may be nil.
type parts struct {
	subject, preheader, html, text *part
}

// part is one compiled piece of Liquid: liquid's tree, and the fast path's program when the fast
// path covers it (see fast.go). Both are compiled from the rewritten source (see rewrite).
type part struct {
	node render.Node
	prog []op // nil: render with liquid
	html bool
	file string // the file it came from, as errors name it
}

// compilePart parses src (from file, starting at line) as an html or plain part.
func compilePart(file, src string, line int, html bool) (p *part, err parser.Error) {
	loc := parser.SourceLoc{Pathname: file, LineNo: line}
	defer func() {
		// liquid's expression lexer panics on some input (an integer literal out of int64's
		// range, for one) instead of returning its syntax error: report it as one.
		if r := recover(); r != nil {
			p, err = nil, parser.Errorf(sourceAt{loc}, "syntax error: %v", r)
		}
	}()
	src = rewrite(src, line, html)
	node, err := grammar()[html].Compile(src, loc)
	if err != nil {
		return nil, err
	}
	return &part{node: node, prog: compileFast(src, file, line, html), html: html, file: file}, nil
}

// sourceAt locates a parse error at the start of a part (liquid's Locatable).
type sourceAt struct{ loc parser.SourceLoc }

func (s sourceAt) SourceLocation() parser.SourceLoc { return s.loc }
func (s sourceAt) SourceText() string               { return "" }

// render renders the part with a copy of bindings (assign and capture write into it) in e, under
// b, whose size budget for this part is kind (max bytes). It returns a *BudgetError or ctx's
// error when the render was stopped, else liquid's error.
func (p *part) render(e *env, bindings map[string]any, b *budget, kind Budget, max int) (string, error) {
	b.file, b.line = p.file, 0
	if p.prog == nil {
		countFallback(FallbackUnsupported)
		return p.renderLiquid(e, bindings, b, kind, max)
	}
	iterations := b.iterations
	out, err := renderFast(p.prog, bindings, e, p.html, b, kind, max)
	fb, ok := err.(*fallback)
	if !ok {
		return out, err
	}
	countFallback(fb.reason)
	b.iterations = iterations // liquid renders the part again from the start
	return p.renderLiquid(e, bindings, b, kind, max)
}

// renderLiquid renders the part with liquid into a limitWriter.
func (p *part) renderLiquid(e *env, bindings map[string]any, b *budget, kind Budget, max int) (out string, err error) {
	w := &limitWriter{limit: max, kind: kind, b: b}
	defer func() {
		// A write past the limit at the end of a block reaches liquid's trimWriter.Flush, which
		// panics with it.
		// liquid also panics on some values (a property of a captured html string) and
		// re-throws panics of filters: a template must not crash the worker rendering it.
		if r := recover(); r != nil {
			e, ok := r.(error)
			if ok && stopCause(e) != nil {
				out, err = "", b.locate(stopCause(e), 0)
				return
			}
			if ok {
				if c, has := e.(interface{ Cause() error }); has && c.Cause() != nil {
					e = c.Cause() // liquid's rethrownError, whose message carries a stack trace
				}
				out, err = "", fmt.Errorf("liquid failed: %w", e)
				return
			}
			out, err = "", fmt.Errorf("liquid failed: %v", r)
		}
	}()
	bindings[budgetKey] = b
	if lerr := render.Render(p.node, w, bindings, e.config(p.html).Config); lerr != nil {
		if stop := stopCause(lerr); stop != nil {
			return "", b.locate(stop, lerr.LineNumber())
		}
		return "", lerr
	}
	return string(w.buf), nil
}

type variant struct {
	name   string
	weight int
	parts  parts // base parts with this variant's overrides applied
}

// source is a compiled content source.
type source struct {
	name         string
	url          *part
	method       string
	headers      map[string]string
	timeout      time.Duration
	cacheTTL     time.Duration
	staleTTL     time.Duration
	retries      int
	skip         bool // on_failure: skip_recipient
	fallback     any  // decoded JSON; empty object when none is declared
	fallbackHash string
	hasFallback  bool
	keyPrefix    string // of cache keys: template, source and method
	urlSrc       string // the manifest's url, before ${VAR} expansion
	urlLine      int
	urlEnv       bool                        // urlSrc has ${VAR} references
	expanded     atomic.Pointer[expandedURL] // urlSrc expanded by the last Renderer that used it
}

// Load reads a template folder: the manifest, the Liquid parts and any other regular file in it
// (variants may name files). Subfolders and dot files are ignored.
func Load(dir string) (*Template, error) {
	files, err := readFolder(dir)
	if err != nil {
		return nil, err
	}
	t, err := FromFiles(files)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", dir, err)
	}
	return t, nil
}

func readFolder(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read template folder: %w", err)
	}
	files := make(map[string]string, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("read template folder: %w", err)
		}
		if err := checkSize(e.Name(), info.Size()); err != nil {
			return nil, err // without reading a stray binary whole
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read template folder: %w", err)
		}
		files[e.Name()] = string(b)
	}
	return files, nil
}

// FromFiles parses a template from its files (file name -> content), as returned by Files. It
// returns a *SyntaxError naming the file and line when a part or the manifest does not parse.
func FromFiles(files map[string]string) (*Template, error) {
	errs := compile(files)
	if len(errs.errs) > 0 {
		return nil, errs.errs[0]
	}
	return errs.t, nil
}

// compiled carries a template and every problem found while compiling it (Validate reports them
// all, FromFiles the first).
type compiled struct {
	t      *Template
	errs   []error
	man    *manifest
	parsed []liquidSource // every Liquid source that parsed, for Validate's checks
}

// liquidSource is one piece of Liquid: a part file, an inline variant part or a source URL.
type liquidSource struct {
	file string
	line int // line of the first line of src
	src  string
	html bool
}

func (c *compiled) add(err error) { c.errs = append(c.errs, err) }

func compile(files map[string]string) compiled {
	var c compiled
	raw, ok := files[FileManifest]
	if !ok {
		c.add(&SyntaxError{File: FileManifest, Msg: "missing manifest (every template folder needs a template.yaml)"})
		return c
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkSize(name, int64(len(files[name]))); err != nil {
			c.add(err)
		}
	}
	if len(c.errs) > 0 {
		return c
	}
	m, err := parseManifest(raw)
	if err != nil {
		c.add(err)
		// Still report the parts' own syntax errors, so one run shows them all.
		c.parseFile(files, FileSubject, false, false)
		c.parseFile(files, FilePreheader, false, false)
		c.parseFile(files, FileHTML, true, false)
		c.parseFile(files, FileText, false, false)
		return c
	}
	c.man = m
	t := &Template{
		name:     m.Name,
		version:  m.Version,
		files:    maps(files),
		defaults: m.Defaults,
		locale:   m.Locale,
		faults:   &sync.Map{},
	}
	for _, p := range m.problems {
		c.add(p)
	}

	t.base.subject = c.parseFile(files, FileSubject, false, true)
	t.base.preheader = c.parseFile(files, FilePreheader, false, false)
	t.base.html = c.parseFile(files, FileHTML, true, true)
	t.base.text = c.parseFile(files, FileText, false, true)

	names = make([]string, 0, len(m.Content))
	for name := range m.Content {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if s := c.compileSource(name, m.Content[name]); s != nil {
			t.sources = append(t.sources, s)
		}
	}

	seen := map[string]bool{}
	for _, v := range m.Variants {
		if seen[v.Name] {
			c.add(&SyntaxError{File: FileManifest, Line: v.line, Msg: fmt.Sprintf("variant %q is declared twice", v.Name)})
		}
		seen[v.Name] = true
		cv := variant{name: v.Name, weight: v.Weight, parts: t.base}
		override := func(dst **part, spec, part string, html bool) {
			if spec == "" {
				return
			}
			if content, ok := files[spec]; ok && spec != FileManifest {
				*dst = c.parse(spec, content, 1, html)
				return
			}
			file := fmt.Sprintf("%s (variant %s %s)", FileManifest, v.Name, part)
			*dst = c.parse(file, spec, v.line, html)
		}
		override(&cv.parts.subject, v.Subject, FileSubject, false)
		override(&cv.parts.preheader, v.Preheader, FilePreheader, false)
		override(&cv.parts.html, v.HTML, FileHTML, true)
		override(&cv.parts.text, v.Text, FileText, false)
		t.variants = append(t.variants, cv)
		t.weights += v.Weight
	}
	if len(m.Variants) > 0 && t.weights <= 0 {
		c.add(&SyntaxError{File: FileManifest, Line: m.variantsLine, Msg: "variant weights add up to 0; give at least one variant a positive weight"})
	}
	c.t = t
	return c
}

// checkSize returns a *SyntaxError when the file is over its size limit.
func checkSize(name string, size int64) error {
	limit, what := int64(MaxPartSize), "a template file"
	if name == FileManifest {
		limit, what = MaxManifestSize, "the manifest"
	}
	if size <= limit {
		return nil
	}
	return &SyntaxError{File: name, Msg: fmt.Sprintf("%d KB is over the %d KB limit for %s (host images and long content elsewhere and link to them)",
		(size+1023)>>10, limit>>10, what)}
}

func (c *compiled) parseFile(files map[string]string, name string, html, required bool) *part {
	src, ok := files[name]
	if !ok {
		if required {
			c.add(&SyntaxError{File: name, Msg: fmt.Sprintf("missing file %q", name)})
		}
		return nil
	}
	return c.parse(name, src, 1, html)
}

func (c *compiled) parse(file, src string, line int, html bool) *part {
	p, err := compilePart(file, src, line, html)
	if err != nil {
		c.add(liquidSyntaxError(file, err))
		return nil
	}
	c.parsed = append(c.parsed, liquidSource{file: file, line: line, src: src, html: html})
	for _, err := range checkFilters(file, line, src) {
		c.add(err)
	}
	return p
}

func (c *compiled) compileSource(name string, spec sourceSpec) *source {
	line := spec.line
	bad := func(format string, a ...any) {
		c.add(&SyntaxError{File: FileManifest, Line: line, Msg: fmt.Sprintf("content %s: ", name) + fmt.Sprintf(format, a...)})
	}
	s := &source{
		name:     name,
		method:   strings.ToUpper(cmpOr(spec.Method, "GET")),
		headers:  spec.Headers,
		timeout:  SourceTimeoutDefault,
		cacheTTL: SourceCacheTTLDefault,
		retries:  SourceRetriesDefault,
	}
	if spec.URL == "" {
		bad("url is required")
	} else if p, err := compilePart(FileManifest, spec.URL, line, false); err != nil {
		bad("url: %s", liquidSyntaxError(FileManifest, err).Msg)
	} else {
		s.url = p
		s.urlSrc, s.urlLine, s.urlEnv = spec.URL, line, envRef.MatchString(spec.URL)
		c.parsed = append(c.parsed, liquidSource{file: FileManifest, line: line, src: spec.URL})
		for _, err := range checkFilters(FileManifest, line, spec.URL) {
			c.add(err)
		}
	}
	switch s.method {
	case "GET", "POST":
	default:
		bad("method %q is not supported (use GET or POST)", spec.Method)
	}
	if spec.Timeout != nil {
		if *spec.Timeout <= 0 {
			bad("timeout must be positive")
		}
		s.timeout = time.Duration(*spec.Timeout)
	}
	if spec.CacheTTL != nil {
		if *spec.CacheTTL < 0 {
			bad("cache_ttl must not be negative (0 disables the cache)")
		}
		s.cacheTTL = time.Duration(*spec.CacheTTL)
	}
	if spec.StaleTTL != nil {
		if *spec.StaleTTL < 0 {
			bad("stale_ttl must not be negative")
		}
		s.staleTTL = time.Duration(*spec.StaleTTL)
	}
	if spec.Retries != nil {
		if *spec.Retries < 0 || *spec.Retries > 5 {
			bad("retries must be between 0 and 5")
		}
		s.retries = *spec.Retries
	}
	switch spec.OnFailure {
	case "", OnFailureFallback:
	case OnFailureSkip:
		s.skip = true
	default:
		bad("on_failure %q is not one of %q, %q", spec.OnFailure, OnFailureFallback, OnFailureSkip)
	}
	fallback := any(map[string]any{})
	if spec.Fallback != nil {
		fallback = spec.Fallback
		s.hasFallback = true
	}
	// Round-trip through JSON so the fallback has the same shape as a fetched body (float64
	// numbers, map[string]any objects) and a hash comparable with it.
	b, err := json.Marshal(fallback)
	if err != nil {
		bad("fallback is not JSON-compatible: %v", err)
		b = []byte("{}")
	}
	if err := json.Unmarshal(b, &s.fallback); err != nil {
		bad("fallback: %v", err)
	}
	s.fallbackHash = hashBytes(b)
	s.keyPrefix = c.man.Name + "\x00" + name + "\x00" + s.method + " "
	return s
}

// Name returns the manifest's name.
func (t *Template) Name() string { return t.name }

// Version returns the manifest's version.
func (t *Template) Version() int { return t.version }

// Files returns a copy of the raw files the template was parsed from; FromFiles(t.Files())
// yields an equivalent template.
func (t *Template) Files() map[string]string { return maps(t.files) }

// Variants returns the names of the template's A/B variants in manifest order (nil when none).
func (t *Template) Variants() []string {
	var names []string
	for _, v := range t.variants {
		names = append(names, v.name)
	}
	return names
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// manifest is template.yaml.
type manifest struct {
	Name     string                `yaml:"name"`
	Version  int                   `yaml:"version"`
	Locale   string                `yaml:"locale"` // BCP 47; the money filter's locale when the recipient has none
	Defaults map[string]any        `yaml:"defaults"`
	Content  map[string]sourceSpec `yaml:"content"`
	Variants []variantSpec         `yaml:"variants"`

	variantsLine int
	problems     []error
}

type sourceSpec struct {
	URL       string            `yaml:"url"`
	Method    string            `yaml:"method"`
	Headers   map[string]string `yaml:"headers"`
	Timeout   *duration         `yaml:"timeout"`
	CacheTTL  *duration         `yaml:"cache_ttl"`
	StaleTTL  *duration         `yaml:"stale_ttl"`
	Retries   *int              `yaml:"retries"`
	Fallback  any               `yaml:"fallback"`
	OnFailure string            `yaml:"on_failure"`

	line int
}

func (s *sourceSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain sourceSpec
	if err := decodeStrict(n, (*plain)(s)); err != nil {
		return err
	}
	s.line = n.Line
	return nil
}

type variantSpec struct {
	Name      string `yaml:"name"`
	Weight    int    `yaml:"weight"`
	Subject   string `yaml:"subject"`
	Preheader string `yaml:"preheader"`
	HTML      string `yaml:"html"`
	Text      string `yaml:"text"`

	line int
}

func (v *variantSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain variantSpec
	if err := decodeStrict(n, (*plain)(v)); err != nil {
		return err
	}
	v.line = n.Line
	return nil
}

// decodeStrict decodes a mapping node into v (a pointer to a struct with yaml tags), rejecting
// keys the struct does not declare: yaml's KnownFields does not reach into custom unmarshalers.
func decodeStrict(n *yaml.Node, v any) error {
	if n.Kind == yaml.MappingNode {
		known := yamlFields(v)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !slices.Contains(known, k.Value) {
				msg := fmt.Sprintf("unknown field %q", k.Value)
				if s := suggest.Closest(k.Value, known); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return &SyntaxError{File: FileManifest, Line: k.Line, Msg: msg}
			}
		}
	}
	return n.Decode(v)
}

func yamlFields(v any) []string {
	rt := reflect.TypeOf(v).Elem()
	var names []string
	for i := range rt.NumField() {
		if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	return names
}

// stripYAMLLine turns "line 3: field foo not found in type x" into "field foo not found in type x".
func stripYAMLLine(msg string) string {
	if strings.HasPrefix(msg, "line ") {
		if i := strings.Index(msg, ": "); i > 0 {
			return msg[i+2:]
		}
	}
	return msg
}

type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	if s == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &SyntaxError{File: FileManifest, Line: n.Line, Msg: fmt.Sprintf("invalid duration %q (write e.g. 2s or 500ms)", s)}
	}
	*d = duration(v)
	return nil
}

func parseManifest(raw string) (*manifest, error) {
	var m manifest
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &root); err != nil {
		return nil, yamlSyntaxError(err)
	}
	if len(root.Content) == 0 {
		return nil, &SyntaxError{File: FileManifest, Line: 1, Msg: "empty manifest (needs at least name and version)"}
	}
	doc := root.Content[0]
	dec := yaml.NewDecoder(strings.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, yamlSyntaxError(err)
	}
	line := func(key string) int {
		if doc.Kind != yaml.MappingNode {
			return 1
		}
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == key {
				return doc.Content[i].Line
			}
		}
		return 1
	}
	m.variantsLine = line("variants")
	if m.Name == "" {
		m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: 1, Msg: "name is required"})
	}
	if m.Version <= 0 {
		m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: line("version"), Msg: "version must be a positive integer"})
	}
	if m.Locale != "" {
		if tag, err := language.Parse(m.Locale); err != nil || tag == language.Und {
			m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: line("locale"),
				Msg: fmt.Sprintf("locale %q is not a language tag (write e.g. en, de or fr-CA)", m.Locale)})
		}
	}
	for _, v := range m.Variants {
		if v.Name == "" {
			m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: v.line, Msg: "variant needs a name"})
		}
		if v.Weight < 0 {
			m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: v.line, Msg: fmt.Sprintf("variant %q: weight must not be negative", v.Name)})
		}
	}
	if m.Defaults != nil {
		// Normalise YAML scalars to JSON shapes, like profile values.
		b, err := json.Marshal(m.Defaults)
		if err != nil {
			m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: line("defaults"), Msg: fmt.Sprintf("defaults: %v", err)})
		} else if err := json.Unmarshal(b, &m.Defaults); err != nil {
			m.problems = append(m.problems, &SyntaxError{File: FileManifest, Line: line("defaults"), Msg: fmt.Sprintf("defaults: %v", err)})
		}
	}
	return &m, nil
}

func yamlSyntaxError(err error) *SyntaxError {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return &SyntaxError{File: FileManifest, Line: yamlLine(te.Errors[0]), Msg: stripYAMLLine(strings.Join(te.Errors, "; "))}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return &SyntaxError{File: FileManifest, Line: yamlLine(msg), Msg: stripYAMLLine(msg)}
}

func yamlLine(msg string) int {
	var n int
	if _, err := fmt.Sscanf(msg, "line %d:", &n); err == nil {
		return n
	}
	return 0
}

// liquidSyntaxError converts a liquid parse error into a *SyntaxError.
func liquidSyntaxError(file string, err parser.Error) *SyntaxError {
	msg := err.Error()
	if c := err.Cause(); c != nil {
		msg = c.Error()
	} else {
		// "Liquid error (line 3): unknown tag in html" -> "unknown tag"
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "Liquid error") {
			msg = msg[i+2:]
		}
		msg = strings.TrimSuffix(msg, " in "+file)
	}
	msg = undoRewrite(msg)
	return &SyntaxError{File: file, Line: err.LineNumber(), Msg: msg}
}
