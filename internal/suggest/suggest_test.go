package suggest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClosest(t *testing.T) {
	fields := []string{"country", "email", "first_name", "count_product_view"}
	for _, tc := range []struct{ in, want string }{
		{"contry", "country"},
		{"emial", "email"},
		{"firstname", "first_name"},
		{"zzz", ""},
		{"", ""},
		{"countre", "country"},
	} {
		require.Equal(t, tc.want, Closest(tc.in, fields), tc.in)
	}
	require.Equal(t, 3, Distance("kitten", "sitting"))
	require.Equal(t, 1, Distance("café", "cafe"), "runes, not bytes")
}
