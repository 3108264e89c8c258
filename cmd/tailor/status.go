package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/opsstatus"
)

// exitDegraded is tailor status's exit code when a component is down (the report still printed).
const exitDegraded = 3

func statusCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "status",
		Usage: "one screen for the operator: backends, stream shards and lag, CDC slot, River queues, campaigns, dead letters, breakers, sender backlog",
		Description: `Reads every section on its own, each within --timeout: a backend that is down shows as
DOWN with its error and the rest is still printed. Exits 0 when every section could be read,
3 when any could not (the report names them), 2 on a usage error; with --watch it runs until
interrupted and exits 0.

Shard lag is the iterator age each consumer reports in the lease table at every renewal
(about every 3 s). Content source breakers live in each 'tailor work' process: pass their
/metrics URLs (--metrics-addr) with --metrics-url to read them, or watch
tailor_content_breaker_state in Prometheus. --json prints the report as JSON (its fields are
described in the README under "Operating it"); --watch refreshes every --interval.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh every --interval until interrupted"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "with --watch: refresh period"},
			&cli.DurationFlag{Name: "timeout", Value: opsstatus.TimeoutDefault, Usage: "how long each section may take to read"},
			&cli.StringSliceFlag{Name: "metrics-url", Usage: "a tailor work /metrics URL to read content breaker states from (e.g. http://10.0.0.5:9102/metrics); repeat or comma-separate"},
		},
		Action: func(c *cli.Context) error {
			if c.Duration("interval") <= 0 || c.Duration("timeout") <= 0 {
				return usagef("--interval and --timeout must be positive")
			}
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			cfg := opsstatus.Config{
				Pool: b.Pool, Kinesis: b.Kinesis, DynamoDB: b.DynamoDB,
				Stream: b.Names.Stream, LeaseTable: b.Names.Leases, Slot: b.Names.Slot,
				Endpoints: endpoints(b), MetricsURLs: c.StringSlice("metrics-url"), Timeout: c.Duration("timeout"),
			}
			w := c.App.Writer
			tty := isTerminal(w)
			for {
				r, err := opsstatus.Read(c.Context, cfg)
				if err != nil {
					return err
				}
				if c.Bool("watch") && tty && !c.Bool("json") {
					fmt.Fprint(w, "\033[H\033[2J") // clear the screen
				}
				if err := writeStatus(w, r, c.Bool("json")); err != nil {
					return err
				}
				if !c.Bool("watch") {
					if len(r.Down) > 0 {
						return cli.Exit("", exitDegraded)
					}
					return nil
				}
				select {
				case <-c.Context.Done():
					return nil
				case <-time.After(c.Duration("interval")):
				}
			}
		},
	})
}

func writeStatus(w io.Writer, r *opsstatus.Report, asJSON bool) error {
	if !asJSON {
		return opsstatus.WriteText(w, r)
	}
	b, err := r.JSON()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// endpoints are the backends' addresses as status shows them.
func endpoints(b *backends.Backends) map[string]string {
	out := map[string]string{}
	if cc := b.Pool.Config().ConnConfig; cc != nil {
		out["postgres"] = net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))) + "/" + cc.Database
	}
	out["kinesis"] = cmpStr(aws.ToString(b.Kinesis.Options().BaseEndpoint), "AWS "+b.Kinesis.Options().Region)
	out["dynamodb"] = cmpStr(aws.ToString(b.DynamoDB.Options().BaseEndpoint), "AWS "+b.DynamoDB.Options().Region)
	return out
}
