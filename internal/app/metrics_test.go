package app

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/metrics"
)

// Every metric of every component follows the naming rules (tailor_ prefix, base units,
// _total on counters only): a component that adds a metric named otherwise fails here.
func TestMetrics_NamesFollowTheRules(t *testing.T) {
	infos, err := MetricsReference()
	require.NoError(t, err)
	require.Greater(t, len(infos), 30, "every component's metrics are listed")
	var errs []error
	for _, i := range infos {
		errs = append(errs, metrics.CheckName(i))
	}
	require.NoError(t, errors.Join(errs...))
}

// The registry every command serves holds the metrics the reference lists.
func TestMetrics_RegistryServesTheReference(t *testing.T) {
	reg, err := Registry()
	require.NoError(t, err)
	fams, err := reg.Gather()
	require.NoError(t, err)
	infos, err := MetricsReference()
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, i := range infos {
		listed[i.Name] = true
	}
	for _, f := range fams {
		if n := f.GetName(); len(n) > 7 && n[:7] == "tailor_" {
			require.True(t, listed[n], "%s is served but not in MetricsReference", n)
		}
	}
}
