package jobs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/tailor-email/tailor/internal/suggest"
)

// SegmentMaxLen bounds a segment expression's length.
const SegmentMaxLen = 4096

// knownFields are the top-level profile attributes a segment may name. Behavioural counters
// (count_<event type>) are accepted by prefix. A name outside both is refused, with a
// suggestion when one is close, so a typo never silently selects nobody.
var knownFields = []string{
	// CRM (tailor cdc)
	"customer_id", "email", "first_name", "last_name", "locale", "timezone", "country",
	"attributes", "subscriptions", "consents", "created_at", "crm_updated_at", "updated_at",
	// behaviour (tailor consume), stored
	"first_seen", "last_seen", "last_event_at", "sessions", "orders", "lifetime_value",
	"last_purchase", "recently_viewed", "cart",
	// behaviour, computed as of the campaign's start (pipeline.Features.SegmentFields)
	"email_opens_30d", "email_clicks_30d", "category_affinity",
}

// count_<type> (lifetime) and count_<type>_<1h|24h|7d|30d> (windowed).
var knownPrefixes = []string{"count_"}

// Segment is a compiled audience filter over a profile, written in expr-lang
// (https://expr-lang.org): e.g. `country == "FR" && count_product_view >= 3`. Missing
// attributes are nil. The zero-cost segment "true" selects every profile with an email.
type Segment struct {
	src  string
	prog *vm.Program
}

// SegmentError explains why a segment does not compile.
type SegmentError struct {
	Expr string
	Msg  string
}

func (e *SegmentError) Error() string { return "segment: " + e.Msg }

// ParseSegment compiles src. Errors say what to fix.
func ParseSegment(src string) (*Segment, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return nil, &SegmentError{Expr: src, Msg: `empty expression (use "true" for everyone)`}
	}
	if len(src) > SegmentMaxLen {
		return nil, &SegmentError{Expr: src, Msg: fmt.Sprintf("expression is %d bytes, over the %d limit", len(src), SegmentMaxLen)}
	}
	tree, err := expr.Compile(src, expr.AsBool(), expr.AllowUndefinedVariables())
	if err != nil {
		return nil, &SegmentError{Expr: src, Msg: err.Error()}
	}
	parsed, err := parser.Parse(src)
	if err != nil {
		return nil, &SegmentError{Expr: src, Msg: err.Error()}
	}
	v := &identVisitor{}
	ast.Walk(&parsed.Node, v)
	for _, name := range v.names {
		if !isKnownField(name) {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := suggest.Closest(name, knownFields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += fmt.Sprintf(" (profile fields: %s, count_<event type>)", strings.Join(knownFields, ", "))
			}
			return nil, &SegmentError{Expr: src, Msg: msg}
		}
	}
	return &Segment{src: src, prog: tree}, nil
}

// String returns the source expression.
func (s *Segment) String() string { return s.src }

// Match reports whether the profile belongs to the segment. It is safe for concurrent use.
func (s *Segment) Match(profile map[string]any) (bool, error) {
	out, err := expr.Run(s.prog, profile)
	if err != nil {
		return false, fmt.Errorf("segment %q: %w", s.src, err)
	}
	b, _ := out.(bool)
	return b, nil
}

type identVisitor struct{ names []string }

func (v *identVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok && !slices.Contains(v.names, id.Value) {
		v.names = append(v.names, id.Value)
	}
}

func isKnownField(name string) bool {
	if slices.Contains(knownFields, name) {
		return true
	}
	for _, p := range knownPrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}
