package ctxtime

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSleep(t *testing.T) {
	require.NoError(t, Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A done context ends even a long sleep at once, with its error.
	require.ErrorIs(t, Sleep(ctx, time.Hour), context.Canceled)
}
