package ddb

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readBody reads the whole body whatever the announced length, in one buffer when the length
// is right, and stops one byte past MaxItemsBody.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 1<<20)
	got, err := readBody(strings.NewReader(body), int64(len(body)))
	require.NoError(t, err)
	require.Equal(t, body, string(got))
	require.Equal(t, len(body)+bytes.MinRead, cap(got), "the buffer was grown")
	for _, announced := range []int64{-1, 0, 10, int64(len(body)) * 2, MaxItemsBody + 5} {
		got, err := readBody(strings.NewReader(body), announced)
		require.NoError(t, err)
		require.Equal(t, body, string(got), "announced %d", announced)
	}
	big := strings.Repeat("y", MaxItemsBody+100)
	for _, announced := range []int64{-1, MaxItemsBody} {
		got, err := readBody(strings.NewReader(big), announced)
		require.NoError(t, err)
		require.Len(t, got, MaxItemsBody+1, "announced %d", announced)
	}
}
