package cdc

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOp_MergeKeepsTheLastValueOfEachColumnOnce(t *testing.T) {
	rel := &relation{table: tableSpecs[TableCustomers]}
	tests := []struct {
		name       string
		first      *op
		next       *op
		wantFields map[string]any
		wantRemove []string
		wantDel    bool
	}{
		{"null twice", &op{table: rel, fields: map[string]any{"a": "1"}, remove: []string{"locale"}},
			&op{table: rel, fields: map[string]any{"a": "2"}, remove: []string{"locale"}},
			map[string]any{"a": "2"}, []string{"locale"}, false},
		{"set after null", &op{table: rel, fields: map[string]any{}, remove: []string{"locale"}},
			&op{table: rel, fields: map[string]any{"locale": "en"}},
			map[string]any{"locale": "en"}, []string{}, false},
		{"null after set", &op{table: rel, fields: map[string]any{"locale": "en", "b": 1}},
			&op{table: rel, fields: map[string]any{}, remove: []string{"locale"}},
			map[string]any{"b": 1}, []string{"locale"}, false},
		{"unchanged toast keeps the earlier value", &op{table: rel, fields: map[string]any{"attributes": "big", "first_name": "a"}},
			&op{table: rel, fields: map[string]any{"first_name": "b"}},
			map[string]any{"attributes": "big", "first_name": "b"}, []string{}, false},
		{"delete wins", &op{table: rel, fields: map[string]any{"a": 1}},
			&op{table: rel, del: true, remove: []string{"a"}}, nil, []string{"a"}, true},
		{"insert after delete", &op{table: rel, del: true, remove: []string{"a"}},
			&op{table: rel, fields: map[string]any{"a": 2}}, map[string]any{"a": 2}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.first.merge(tt.next)
			require.Equal(t, tt.wantDel, tt.first.del)
			require.Equal(t, tt.wantFields, tt.first.fields)
			if len(tt.wantRemove) == 0 {
				require.Empty(t, tt.first.remove)
			} else {
				require.Equal(t, tt.wantRemove, tt.first.remove)
			}
		})
	}
}

func TestDecodeText_MapsPostgresTextToProfileValues(t *testing.T) {
	tests := []struct {
		oid  uint32
		in   string
		want any
	}{
		{16, "t", true},
		{16, "f", false},
		{23, "42", int64(42)},
		{701, "1.5", 1.5},
		{701, "NaN", "NaN"},
		{1700, "12.25", 12.25},
		{3802, `{"a":[1,"x"],"b":null}`, map[string]any{"a": []any{float64(1), "x"}, "b": nil}},
		{1184, "2026-01-02 03:04:05.5+01", "2026-01-02T02:04:05.5Z"},
		{1184, "infinity", "infinity"},
		{25, "plain", "plain"},
	}
	for _, tt := range tests {
		got, err := decodeText(tt.oid, []byte(tt.in))
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
	_, err := decodeText(3802, []byte("{"))
	require.Error(t, err)
}

// FuzzDecodeText checks that no column text, of any type, makes decoding panic, and that what it
// returns is either an error or a value of a type the profile store can marshal.
func FuzzDecodeText(f *testing.F) {
	for _, seed := range []struct {
		oid uint32
		in  string
	}{{16, "t"}, {20, "-9"}, {701, "1e308"}, {1700, "NaN"}, {3802, `{"a":[1]}`}, {114, "[]"}, {1184, "2026-01-02 03:04:05+00"}, {1184, "-infinity"}, {25, ""}} {
		f.Add(seed.oid, []byte(seed.in))
	}
	f.Fuzz(func(t *testing.T, oid uint32, data []byte) {
		v, err := decodeText(oid, data)
		if err != nil {
			return
		}
		switch v.(type) {
		case nil, bool, int64, float64, string, map[string]any, []any:
		default:
			t.Fatalf("decodeText(%d, %q) = %T", oid, data, v)
		}
	})
}
