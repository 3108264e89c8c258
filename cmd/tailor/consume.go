package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func consumeCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "consume",
		Usage: "consume the event stream into profiles (run as many as you like: shards are shared through leases)",
		Description: `Reads the Kinesis stream with shard leases in DynamoDB (<prefix>leases): each process takes
free or expired leases and balances with the others; a child shard starts after its parents
are finished. Events are aggregated into the profiles table; checkpoints advance only after
the profile writes are durable. On SIGINT/SIGTERM the current batches finish and the leases are
released for the other consumers (graceful handoff) within --stop-timeout.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "start", EnvVars: []string{"TAILOR_CONSUME_START"}, Value: "trim-horizon", Usage: "where a shard without a checkpoint starts: trim-horizon or latest"},
			&cli.StringFlag{Name: "owner", EnvVars: []string{"TAILOR_CONSUME_OWNER"}, Usage: "lease owner name (default hostname-pid-random)"},
			&cli.DurationFlag{Name: "lease-duration", EnvVars: []string{"TAILOR_LEASE_DURATION"}, Value: stream.LeaseDurationDefault, Usage: "a dead consumer's shards move to live ones after this"},
			&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the stream must be created"},
			metricsAddrFlag("CONSUME", "127.0.0.1:9101"),
			&cli.DurationFlag{Name: "stop-timeout", EnvVars: []string{"TAILOR_STOP_TIMEOUT"}, Value: 30 * time.Second, Usage: "how long the graceful handoff may take after a stop signal"},
		},
		Action: func(c *cli.Context) error {
			var start string
			switch strings.ToLower(c.String("start")) {
			case "trim-horizon", "trim_horizon":
				start = stream.StartTrimHorizon
			case "latest":
				start = stream.StartLatest
			default:
				return usagef("--start %q: want trim-horizon or latest", c.String("start"))
			}
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			ctx := c.Context
			stopMetrics, err := startMetrics(c, b)
			if err != nil {
				return err
			}
			defer stopMetrics()
			consumer, err := app.Consumer(ctx, b, app.ConsumerOptions{
				Owner: c.String("owner"), StartPosition: start, LeaseDuration: c.Duration("lease-duration"),
				Shards: c.Int("shards"), Logger: slog.Default(),
			})
			if err != nil {
				return err
			}
			// The consumer runs on its own context so a signal becomes a graceful handoff.
			runCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
			defer hardStop()
			errc := make(chan error, 1)
			go func() { errc <- consumer.Run(runCtx) }()
			slog.Info("consuming", "stream", b.Names.Stream, "owner", consumer.Owner())
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			slog.Info("stopping consumer: handing leases over", "timeout", c.Duration("stop-timeout"))
			stopCtx, cancel := context.WithTimeout(context.Background(), c.Duration("stop-timeout"))
			defer cancel()
			if err := consumer.Stop(stopCtx); err != nil {
				hardStop()
				return errors.Join(err, <-errc)
			}
			if err := <-errc; err != nil {
				return err
			}
			slog.Info("consumer stopped, leases released")
			return nil
		},
	})
}
