package ddb_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/ddb"
)

func TestFlattenCondition_KeepsGroupingAndDropsLeafParentheses(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"(((attribute_not_exists (#2)) OR (#2 < :1)) AND ((attribute_not_exists (#0.#1)) OR (#0.#1.#3 < :2)))": "((attribute_not_exists (#2) OR #2 < :1) AND (attribute_not_exists (#0.#1) OR #0.#1.#3 < :2))",
		"(size (#0) < :0) OR (attribute_exists (#1))":                                                          "size (#0) < :0 OR attribute_exists (#1)",
		"#0 = :0":                      "#0 = :0",
		"NOT ((#0 = :0) OR (#1 = :1))": "NOT (#0 = :0 OR #1 = :1)",
		"(#0 = :0) AND (#1 <> :1)":     "#0 = :0 AND #1 <> :1",
	} {
		require.Equal(t, want, ddb.FlattenCondition(in), in)
	}
}

func TestExpression_BuildsFlatConditions(t *testing.T) {
	t.Parallel()
	cond := expression.Name("a").AttributeNotExists().Or(expression.Name("a").LessThan(expression.Value(3))).
		And(expression.Name("b").Equal(expression.Value("x")))
	upd := expression.Set(expression.Name("a"), expression.Value(4))
	u, c, names, values, err := ddb.Expression(&upd, &cond)
	require.NoError(t, err)
	require.Equal(t, "SET #0 = :2\n", *u)
	require.Equal(t, "(attribute_not_exists (#0) OR #0 < :0) AND #1 = :1", *c)
	require.Equal(t, map[string]string{"#0": "a", "#1": "b"}, names)
	require.Len(t, values, 3)
}
