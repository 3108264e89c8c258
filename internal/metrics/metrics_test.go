package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestRegister_TwiceIsNotAnErrorButAClashIs(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "tailor_test_total", Help: "h"})
	require.NoError(t, Register(reg, c))
	require.NoError(t, Register(reg, c), "the same collector again")
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tailor_test_total", Help: "other"})
	require.Error(t, Register(reg, clash), "another metric under the same name")
}
