package jobs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/tailor-email/tailor/internal/suggest"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// SegmentMaxLen bounds a segment expression's length.
const SegmentMaxLen = 4096

// Segment is a compiled audience filter over the profile's read view (profile.Fields), written
// in expr-lang (https://expr-lang.org): e.g. `country == "FR" && count_product_view >= 3`. It
// is type-checked against the view when parsed: an unknown field, an unknown event type in
// count_<type>..., or a comparison of the wrong type is an error that points at the token.
// Open CRM data is reached through attributes.<name>.
type Segment struct {
	src   string
	prog  *vm.Program
	names []string
	// constant is the result of an expression of literals only (`true` for everyone), which
	// MatchProfile returns without building the profile's view.
	constant *bool
}

// SegmentError explains why a segment does not compile: the message, the position (1-based
// line and column, 0 when the whole expression is at fault) and a snippet pointing at it.
type SegmentError struct {
	Expr         string
	Msg          string
	Line, Column int
	Snippet      string
}

func (e *SegmentError) Error() string {
	if e.Line == 0 {
		return "segment: " + e.Msg
	}
	return fmt.Sprintf("segment: %s (line %d, column %d)%s", e.Msg, e.Line, e.Column, e.Snippet)
}

// ErrInvalidSegment matches every *SegmentError with errors.Is.
var ErrInvalidSegment = errors.New("invalid segment")

// Is makes errors.Is(err, ErrInvalidSegment) true for segment errors.
func (e *SegmentError) Is(target error) bool { return target == ErrInvalidSegment }

// segmentErr turns an expr-lang error (with its location) into a SegmentError.
func segmentErr(src string, err error) *SegmentError {
	var fe *file.Error
	if errors.As(err, &fe) {
		return &SegmentError{Expr: src, Msg: fe.Message, Line: fe.Line, Column: fe.Column + 1, Snippet: fe.Snippet}
	}
	return &SegmentError{Expr: src, Msg: err.Error()}
}

// ParseSegment compiles src against the profile view. Errors are *SegmentError and say what
// to fix.
func ParseSegment(src string) (*Segment, error) { return parseExpr(src, nil) }

// parseExpr compiles src against the profile view plus extra names (a trigger's event).
func parseExpr(src string, extra map[string]any) (*Segment, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return nil, &SegmentError{Expr: src, Msg: `empty expression (use "true" for everyone)`}
	}
	if len(src) > SegmentMaxLen {
		return nil, &SegmentError{Expr: src, Msg: fmt.Sprintf("expression is %d bytes, over the %d limit", len(src), SegmentMaxLen)}
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, segmentErr(src, err)
	}
	env := profile.FieldTypes()
	for k, v := range extra {
		env[k] = v
	}
	v := &identVisitor{}
	ast.Walk(&tree.Node, v)
	for _, id := range v.idents {
		if _, ok := env[id.Value]; ok || isBuiltin(id.Value) {
			continue
		}
		msg := fmt.Sprintf("unknown field %q", id.Value)
		if s := suggest.Closest(id.Value, profile.FieldNames()); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if strings.HasPrefix(id.Value, "count_") {
			msg += " (count_<event type>[_1h|_24h|_7d|_30d]; see the profile fields in the README)"
		} else {
			msg += " (CRM columns and attributes are attributes.<name>; see the profile fields in the README)"
		}
		fe := (&file.Error{Location: id.Location(), Message: msg}).Bind(file.NewSource(src))
		return nil, segmentErr(src, fe)
	}
	prog, err := expr.Compile(src, expr.Env(env), expr.AsBool())
	if err != nil {
		return nil, segmentErr(src, err)
	}
	seg := &Segment{src: src, prog: prog, names: v.names()}
	if v.literalOnly() {
		if out, err := expr.Run(prog, env); err == nil {
			b, _ := out.(bool)
			seg.constant = &b
		}
	}
	return seg, nil
}

// isBuiltin reports whether name is one of expr-lang's built-in functions or constants, which
// the parser reports as identifiers too.
func isBuiltin(name string) bool {
	return name == "nil" || name == "true" || name == "false"
}

// String returns the source expression.
func (s *Segment) String() string { return s.src }

// Fields lists the profile fields the segment reads, in order of first use.
func (s *Segment) Fields() []string { return slices.Clone(s.names) }

// Match reports whether a profile's view (profile.Profile.Fields) belongs to the segment. An
// error means this profile's data could not be evaluated (say, an attributes value of an
// unexpected type): the caller counts it with its reason. It is safe for concurrent use.
func (s *Segment) Match(fields map[string]any) (bool, error) {
	out, err := expr.Run(s.prog, fields)
	if err != nil {
		return false, fmt.Errorf("segment %q: %w", s.src, err)
	}
	b, _ := out.(bool)
	return b, nil
}

// MatchProfile is Match over p's view as of now; a segment of literals only (`true`) does not
// build the view. It is safe for concurrent use.
func (s *Segment) MatchProfile(p *profile.Profile, now time.Time) (bool, error) {
	if s.constant != nil {
		return *s.constant, nil
	}
	return s.Match(p.Fields(now))
}

type identVisitor struct {
	idents []*ast.IdentifierNode
	other  bool // a node that is neither a literal nor an operator (a field, a call, ...)
}

func (v *identVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		v.idents = append(v.idents, n)
		v.other = true
	case *ast.NilNode, *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.ConstantNode,
		*ast.UnaryNode, *ast.BinaryNode, *ast.ConditionalNode:
	default:
		v.other = true
	}
}

// literalOnly reports whether the expression is made of literals and operators only, so its
// value is the same for every profile and at every time.
func (v *identVisitor) literalOnly() bool { return !v.other }

func (v *identVisitor) names() []string {
	var out []string
	for _, id := range v.idents {
		if !slices.Contains(out, id.Value) {
			out = append(out, id.Value)
		}
	}
	return out
}
