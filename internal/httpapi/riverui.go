package httpapi

import (
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
)

// RiverUIPrefix is where the River UI is mounted.
const RiverUIPrefix = "/riverui"

// NewRiverUI returns River's web UI (jobs, queues, retries) over client, for operators: Start
// it (its background services end with ctx), then mount it at RiverUIPrefix + "/" behind
// RequireScopeBrowser(keys, ScopeAdmin, h). Job arguments are hidden by default in the job
// list (they may name customers).
func NewRiverUI(client *river.Client[pgx.Tx], logger *slog.Logger) (*riverui.Handler, error) {
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints:                riverui.NewEndpoints(client, nil),
		JobListHideArgsByDefault: true,
		Logger:                   logger,
		Prefix:                   RiverUIPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	return h, nil
}
