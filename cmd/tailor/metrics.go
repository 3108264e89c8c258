package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/httpserver"
)

const flagMetricsAddr = "metrics-addr"

// metricsAddrFlag is --metrics-addr of every long-running command but serve (which serves
// /metrics on --addr): TAILOR_<COMMAND>_METRICS_ADDR, else TAILOR_METRICS_ADDR.
func metricsAddrFlag(command, example string) cli.Flag {
	return &cli.StringFlag{
		Name: flagMetricsAddr, EnvVars: []string{"TAILOR_" + command + "_METRICS_ADDR", "TAILOR_METRICS_ADDR"},
		Usage: "serve Prometheus /metrics, /healthz and /readyz on this address, e.g. " + example + " (default: off)",
	}
}

// startMetrics serves /metrics (every component's metrics and extra), /healthz and /readyz
// on --metrics-addr when it is set; the returned stop shuts the server down (a no-op when off).
func startMetrics(c *cli.Context, b *backends.Backends, extra ...prometheus.Collector) (stop func(), err error) {
	addr := c.String(flagMetricsAddr)
	if addr == "" {
		return func() {}, nil
	}
	reg, err := app.Registry(extra...)
	if err != nil {
		return nil, err
	}
	srv, err := httpserver.Start(httpserver.Config{Addr: addr, Checks: readinessChecks(b), Mux: http.NewServeMux(), Registry: reg, Logger: slog.Default()})
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), httpserver.ShutdownTimeoutDefault)
		defer cancel()
		_ = srv.Stop(ctx)
	}, nil
}
