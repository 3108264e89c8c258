package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/ddb"
	"github.com/tailor-email/tailor/internal/opsstatus"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/templates"
)

// The collector settings of tailor work (see gcFlags), measured with the 100 000-recipient
// benchmarks (one run each, same machine state): Go's default (GOGC=100, no limit) spent
// 15.4 CPU-s at 214 MB peak without content sources and 37.8 CPU-s at ~297 MB with them;
// GOGC=400 under 240 MiB spent 12.2 CPU-s at 265 MB and 32.3 CPU-s at 269 MB. A 200 MiB limit
// made the collector thrash with content sources (50 CPU-s: their responses keep the live heap
// near it), and GOGC=400 without a limit peaked at 670 MB.
const (
	workGCPercent     = 400
	workMemoryLimitMB = 240
)

func workCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "work",
		Usage: "run River workers: campaign fan-out and template rendering (run as many as you like)",
		Description: `Works the campaigns and render queues until interrupted. On SIGINT/SIGTERM it stops
fetching, lets running jobs finish for --stop-timeout, then cancels them (they retry elsewhere).
With --public-url and --token-key every rendered message links to its own preference page
and one-click unsubscribe (List-Unsubscribe and List-Unsubscribe-Post headers), and the
messages of campaigns created with --track get an open pixel and click redirects under
--public-url (/t/o/TOKEN, /t/c/TOKEN); give 'tailor serve' the same keys.`,
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "render-workers", EnvVars: []string{"TAILOR_RENDER_WORKERS"}, Value: jobs.RenderWorkersDefault, Usage: "concurrent render.batch jobs in this process"},
			&cli.IntFlag{Name: "batch-size", EnvVars: []string{"TAILOR_BATCH_SIZE"}, Value: jobs.BatchSizeDefault, Usage: "recipients per render.batch job (1-100)"},
			&cli.DurationFlag{Name: "stop-timeout", EnvVars: []string{"TAILOR_STOP_TIMEOUT"}, Value: 30 * time.Second, Usage: "how long running jobs may finish after a stop signal"},
			&cli.DurationFlag{Name: "body-retention", Value: jobs.BodyRetentionDefault, Usage: "delete a rendered body (HTML and text; metadata and content hash stay) this long after its message's final ack (negative: keep)"},
			&cli.IntFlag{Name: "handoff", Value: jobs.HandoffDefault, Usage: "profiles the campaign scan may hold for this process's render jobs so they skip a second DynamoDB read; -1: none"},
			metricsAddrFlag("WORK", "127.0.0.1:9102"),
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of this process to FILE until it stops (go tool pprof FILE)"},
		}, append(linkFlags(), gcFlags("WORK", workGCPercent, workMemoryLimitMB)...)...),
		Action: func(c *cli.Context) error {
			if c.Duration("body-retention") == 0 {
				return usagef("--body-retention 0: want a duration (e.g. 168h), or a negative one to keep bodies")
			}
			if bs := c.Int("batch-size"); bs < 1 || bs > ddb.BatchGetMax {
				return usagef("--batch-size %d: want 1 to %d", bs, ddb.BatchGetMax)
			}
			if err := tuneGC(c); err != nil {
				return err
			}
			links, err := links(c)
			if err != nil {
				return err
			}
			keys, err := tokenKeys(c)
			if err != nil {
				return err
			}
			tracker, err := app.Tracker(c.String("public-url"), keys)
			if err != nil {
				return usagef("--public-url / --token-key: %v", err)
			}
			stopProfile, err := startCPUProfile(c.String("cpuprofile"))
			if err != nil {
				return err
			}
			defer stopProfile()
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			// The work processes also export the Postgres-side gauges of tailor status (River
			// queues, sender backlog, dead letters, campaign progress).
			stopMetrics, err := startMetrics(c, b, opsstatus.NewCollector(b.Pool))
			if err != nil {
				return err
			}
			defer stopMetrics()
			client, err := app.Workers(c.Context, b, jobs.Config{
				Renderer:      templates.NewRenderer(templates.RendererConfig{}),
				RenderWorkers: c.Int("render-workers"),
				BatchSize:     c.Int("batch-size"),
				Links:         links,
				Tracker:       tracker,
				Handoff:       c.Int("handoff"),
				BodyRetention: c.Duration("body-retention"),
				Logger:        slog.Default(),
			})
			if err != nil {
				return err
			}
			// River's client runs on its own context so a signal becomes a soft stop, not an abort.
			if err := client.Start(context.WithoutCancel(c.Context)); err != nil {
				return fmt.Errorf("start workers: %w", err)
			}
			slog.Info("workers running", "queues", []string{jobs.QueueCampaigns, jobs.QueueRender})
			<-c.Context.Done()
			slog.Info("stopping workers", "timeout", c.Duration("stop-timeout"))
			stopCtx, cancel := context.WithTimeout(context.Background(), c.Duration("stop-timeout"))
			defer cancel()
			if err := client.Stop(stopCtx); err != nil {
				hard, cancelHard := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancelHard()
				return client.StopAndCancel(hard)
			}
			return nil
		},
	})
}

// startCPUProfile profiles the process's CPU into path until the returned function is called
// (nothing when path is empty).
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if h, err := os.Create(path + ".heap"); err == nil { // TEMP
			_ = pprof.Lookup("allocs").WriteTo(h, 0)
			h.Close()
		}
		if err := f.Close(); err != nil {
			slog.Error("cpu profile", "path", path, "error", err)
		}
	}, nil
}
