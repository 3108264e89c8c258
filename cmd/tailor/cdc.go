package main

import (
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/cdc"
)

func cdcCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "cdc",
		Usage: "copy CRM tables (customers, subscriptions, consents) into DynamoDB profiles through logical replication",
		Description: `Streams changes of the customers, subscriptions and consents tables from the replication
slot (--prefix + "cdc") into the profiles table. On first start it creates the publication and
the slot and backfills every existing row from the slot's snapshot. Run two: one streams, the
other waits as a standby and takes over when the first one dies. Stops on SIGINT/SIGTERM; a
restart resumes where the last acknowledged change left off.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "standby-timeout", EnvVars: []string{"TAILOR_CDC_STANDBY_TIMEOUT"}, Value: cdc.StandbyTimeoutDefault, Usage: "heartbeat: how often the position is reported to Postgres when idle"},
			&cli.IntFlag{Name: "workers", EnvVars: []string{"TAILOR_CDC_WORKERS"}, Value: cdc.WorkersDefault, Usage: "concurrent DynamoDB writers"},
			&cli.IntFlag{Name: "batch-size", EnvVars: []string{"TAILOR_CDC_BATCH_SIZE"}, Value: cdc.BatchSizeDefault, Usage: "row changes applied and acknowledged together"},
			metricsAddrFlag("CDC", "127.0.0.1:9103"),
		},
		Action: func(c *cli.Context) error {
			if c.Int("workers") < 1 || c.Int("batch-size") < 1 {
				return usagef("--workers and --batch-size must be at least 1")
			}
			b, p, err := openCDC(c, cdc.Config{
				StandbyTimeout: c.Duration("standby-timeout"),
				Workers:        c.Int("workers"),
				BatchSize:      c.Int("batch-size"),
			})
			if err != nil {
				return err
			}
			defer b.Close()
			stopMetrics, err := startMetrics(c, b, cdc.NewCollector(b.Pool, b.Names.Slot))
			if err != nil {
				return err
			}
			defer stopMetrics()
			slog.Info("cdc starting", "slot", b.Names.Slot, "publication", b.Names.Publication, "profiles", b.Names.Profiles)
			err = p.Run(c.Context)
			if errors.Is(err, cdc.ErrPermanent) {
				// A misconfiguration: retrying cannot help, the message says what to fix.
				return cli.Exit(err.Error(), exitFailure)
			}
			return err
		},
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "show the replication slot: confirmed position, lag in bytes and seconds, retained WAL",
				Action: func(c *cli.Context) error {
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					st, err := cdc.ReadStatus(c.Context, b.Pool, b.Names.Slot)
					if errors.Is(err, cdc.ErrNoSlot) {
						return cli.Exit(fmt.Sprintf("slot %s does not exist: start `tailor cdc` to create it", b.Names.Slot), exitFailure)
					}
					if err != nil {
						return err
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintf(w, "slot\t%s\n", st.Slot)
					fmt.Fprintf(w, "active\t%t (pid %d)\n", st.Active, st.PID)
					fmt.Fprintf(w, "confirmed_flush_lsn\t%s\n", st.ConfirmedFlushLSN)
					fmt.Fprintf(w, "current_wal_lsn\t%s\n", st.CurrentLSN)
					fmt.Fprintf(w, "lag_bytes\t%d\n", st.LagBytes)
					fmt.Fprintf(w, "lag_seconds\t%.3f\n", st.LagSeconds)
					fmt.Fprintf(w, "retained_wal_bytes\t%d\n", st.RetainedBytes)
					fmt.Fprintf(w, "wal_status\t%s\n", st.WALStatus)
					if st.BackfilledLSN != "" {
						fmt.Fprintf(w, "backfilled\tat %s (snapshot %s)\n", st.BackfilledAt.UTC().Format(time.RFC3339), st.BackfilledLSN)
					} else {
						fmt.Fprintf(w, "backfilled\tno\n")
					}
					return w.Flush()
				},
			},
			{
				Name:  "resync",
				Usage: "re-backfill every profile from a fresh snapshot and erase CRM data of rows that are gone",
				Description: `Safe while 'tailor cdc' runs: changes streamed after the snapshot keep precedence.
The permanent slot is not touched.`,
				Action: func(c *cli.Context) error {
					b, p, err := openCDC(c, cdc.Config{})
					if err != nil {
						return err
					}
					defer b.Close()
					res, err := p.Resync(c.Context)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "resynced %d rows at snapshot %d; erased %d rows that are gone\n", res.Rows, res.SnapshotLSN, res.Erased)
					return nil
				},
			},
		},
	})
}

// openCDC opens the backends and builds a CDC process over them.
func openCDC(c *cli.Context, cfg cdc.Config) (*backends.Backends, *cdc.CDC, error) {
	b, err := openBackends(c)
	if err != nil {
		return nil, nil, err
	}
	p, err := app.CDC(c.Context, b, cfg)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, p, nil
}
