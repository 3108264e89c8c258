package main

import (
	"log/slog"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/tracking"
)

// trackingRoutes mounts the engagement tracking routes (GET /t/o/TOKEN, GET /t/c/TOKEN; no API
// key: mail clients call them) when --token-key is given: their keys derive from it.
func trackingRoutes(c *cli.Context, b *backends.Backends, mux *http.ServeMux) error {
	keys, err := tokenKeys(c)
	if err != nil {
		return err
	}
	h, err := app.TrackingHandler(b, keys, slog.Default())
	if err != nil {
		return usagef("tracking: %v", err)
	}
	if h == nil {
		return nil // preferenceRoutes already warned that --token-key is missing
	}
	h.Register(mux)
	return nil
}

// trackFlag is campaign create's --track.
var trackFlag = &cli.StringFlag{Name: "track", Usage: "engagement tracking: opens, clicks or opens,clicks (default: none); 'tailor work' needs --public-url and --token-key, 'tailor serve' --token-key"}

// trackInput parses --track.
func trackInput(c *cli.Context) (tracking.Track, error) {
	t, err := tracking.ParseTrack(c.String("track"))
	if err != nil {
		return t, usagef("--track: %v", err)
	}
	return t, nil
}
