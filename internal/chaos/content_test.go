package chaos

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestContentServer_ModesAnswerOKDownAndSlow(t *testing.T) {
	cs, err := startContent()
	require.NoError(t, err)
	t.Cleanup(func() { cs.Close() })
	cs.delay = 300 * time.Millisecond
	get := func() (int, time.Duration) {
		start := time.Now()
		res, err := http.Get(cs.URL + "/recommendations?customer=c1")
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode, time.Since(start)
	}
	code, took := get()
	require.Equal(t, http.StatusOK, code)
	require.Less(t, took, 200*time.Millisecond)
	cs.mode.Store(contentDown)
	code, _ = get()
	require.Equal(t, http.StatusServiceUnavailable, code)
	cs.mode.Store(contentSlow)
	code, took = get()
	require.Equal(t, http.StatusOK, code)
	require.GreaterOrEqual(t, took, 300*time.Millisecond)
	require.EqualValues(t, 3, cs.hits.Load())
}
