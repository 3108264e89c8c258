package templates

import (
	"testing"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

// The exported breaker-state numbers are gobreaker's, so OnStateChange can store them as they come.
func TestBreakerStates_MatchGobreaker(t *testing.T) {
	require.Equal(t, BreakerClosed, int(gobreaker.StateClosed))
	require.Equal(t, BreakerHalfOpen, int(gobreaker.StateHalfOpen))
	require.Equal(t, BreakerOpen, int(gobreaker.StateOpen))
	setBreakerState("t/src", int32(gobreaker.StateOpen))
	require.Equal(t, BreakerOpen, ReadBreakerStates()["t/src"])
	setBreakerState("t/src", int32(gobreaker.StateClosed))
	require.Equal(t, BreakerClosed, ReadBreakerStates()["t/src"])
}
