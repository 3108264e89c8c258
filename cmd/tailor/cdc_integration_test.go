package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tailor cdc stops on a misconfiguration, exit code 1, saying what to fix, instead of retrying
// it forever.
func TestCLI_CDCExitsOneSayingWhatToFix(t *testing.T) {
	e := newCLIEnv(t)
	_, err := e.env.Pool.Exec(context.Background(), "DROP TABLE consents")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out := e.run(ctx, "cdc")
	require.NoError(t, ctx.Err(), "tailor cdc kept retrying a misconfiguration:\n%s", out)
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, `tailor: cdc: relation "consents" does not exist: a published table`)
	require.Contains(t, out, "run tailor migrate against this database")
}
