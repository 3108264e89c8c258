package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/chaos"
	"github.com/tailor-email/tailor/internal/cluster"
	"github.com/tailor-email/tailor/localstack"
)

func devClusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "run a multi-process cluster on the running local stack (2 consume, 2 work, 1+1 cdc, 2 serve, 1 relay) until Ctrl-C",
		Description: `Migrates the schema, then starts the processes of --roles, each logging to
<dir>/cluster/ROLE-N.log, and prints their pids, ports and logs. One cdc process streams, the
other waits on the slot as a standby. serve processes listen on free loopback ports and take
the bootstrap API key printed at start (Authorization: Bearer KEY); work and serve share a
fresh token key, so rendered messages link to serve-0's preference pages. The relay delivers
to an SMTP sink this command runs on loopback (its URL is printed). A role the binary does
not have is skipped with a note. Nothing is restarted: a
process that dies stays dead (its exit is printed). Ctrl-C or SIGTERM stops them all.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "roles", Usage: "process counts per role, e.g. consume=3,work=1,relay=0 (roles left out keep the default: " + defaultRoles() + ")"},
			&cli.StringFlag{Name: flagDir, Usage: "local stack directory (as the global --dir)"},
		},
		Action: func(c *cli.Context) error {
			counts, err := cluster.ParseCounts(c.String("roles"))
			if err != nil {
				return usagef("--roles: %v", err)
			}
			dir, err := filepath.Abs(clusterDir(c))
			if err != nil {
				return err
			}
			if _, err := localstack.Load(dir); err != nil {
				return cli.Exit(err.Error(), exitFailure)
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			global := []string{"--dir", dir, "--prefix", c.String(flagPrefix)}
			if u := c.String(flagDatabaseURL); u != "" {
				global = append(global, "--database-url", u)
			}
			if out, err := exec.CommandContext(c.Context, bin, append(global, "migrate")...).CombinedOutput(); err != nil {
				return fmt.Errorf("migrate: %w: %s", err, strings.TrimSpace(string(out)))
			}
			keys, err := cluster.NewKeys()
			if err != nil {
				return err
			}
			servePort, err := cluster.FreePort()
			if err != nil {
				return err
			}
			publicURL := "http://127.0.0.1:" + strconv.Itoa(servePort)
			roleArgs := keys.RoleArgs(publicURL)
			if n, ok := counts["relay"]; !ok || n > 0 {
				// The relay delivers to an SMTP sink of this process on loopback.
				sink, err := smtpsink.Start(smtpsink.Config{Addr: "127.0.0.1:0"})
				if err != nil {
					return err
				}
				defer sink.Close()
				roleArgs["relay"] = []string{"--smtp", sink.URL(), "--from", "Tailor cluster <cluster@tailor.invalid>"}
				fmt.Fprintf(c.App.Writer, "SMTP sink for the relay: %s\n", sink.URL())
			}
			cl, err := cluster.Start(c.Context, cluster.Config{
				Binary: bin, GlobalArgs: global, Counts: counts, RoleArgs: roleArgs,
				Ports: map[string]int{"serve-0": servePort}, LogDir: filepath.Join(dir, "cluster"),
				Note: func(f string, a ...any) { fmt.Fprintf(c.App.ErrWriter, "cluster: "+f+"\n", a...) },
			})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ROLE\tPID\tPORT\tLOG")
			for _, p := range cl.Procs() {
				port := "-"
				if p.Port != 0 {
					port = strconv.Itoa(p.Port)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", p.Name(), p.PID, port, p.Log)
			}
			_ = w.Flush()
			fmt.Fprintf(c.App.Writer, "API key (events scope and all others): %s\npreference pages: %s\nCtrl-C stops the cluster.\n", keys.APIKey, publicURL)
			exited := make(chan *cluster.Proc)
			for _, p := range cl.Procs() {
				go func() {
					select {
					case <-p.Done():
						exited <- p
					case <-c.Context.Done():
					}
				}()
			}
			for {
				select {
				case p := <-exited:
					fmt.Fprintf(c.App.ErrWriter, "cluster: %s (pid %d) exited: %v; see %s (not restarted)\n", p.Name(), p.PID, p.Err(), p.Log)
					continue
				case <-c.Context.Done():
				}
				break
			}
			fmt.Fprintln(c.App.Writer, "stopping the cluster")
			if err := cl.Stop(context.WithoutCancel(c.Context)); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, "cluster stopped")
			return nil
		},
	}
}

func defaultRoles() string {
	var parts []string
	for _, r := range cluster.Roles {
		parts = append(parts, fmt.Sprintf("%s=%d", r.Name, r.Count))
	}
	return strings.Join(parts, ",")
}

// clusterDir is the command's own --dir, else the global one (the local flag shadows it in
// c.String), else the stack stackDir finds.
func clusterDir(c *cli.Context) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(flagDir) && ctx.String(flagDir) != "" {
			return ctx.String(flagDir)
		}
	}
	return stackDir(c)
}

func devChaosCommand() *cli.Command {
	return &cli.Command{
		Name:  "chaos",
		Usage: "run the fault matrix over a cluster on the running local stack and check the invariants (exit 1 on a violation)",
		Description: `Makes its own database and prefix on the stack, starts a cluster (as 'dev cluster', without
relay), and for --window sends events through serve, changes CRM rows, unsubscribes
recipients and runs a campaign while a sender claims and never acks. Meanwhile it SIGKILLs
each role at random points and restarts it, takes the content API down and makes it slow,
terminates the workers' Postgres sessions and (not with --short) restarts Postgres and stalls
kinesalite and dynalite. Then it checks against its ground truth: every event counted once,
profiles equal to their CRM rows, one message per eligible recipient, nothing claimed after
an unsubscribe, no River job lost. It prints the faults and the invariants; every wait is
bounded. The seed is printed: --seed reproduces the choices (the timings still vary).
--short is the make test version: small volumes and no fault of the stack itself.`,
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "seed", Usage: "random seed, 1 or more (default: a random one, printed)"},
			&cli.BoolFlag{Name: "short", Usage: "the short version: a few faults, small volumes, the stack itself untouched"},
			&cli.DurationFlag{Name: "window", Usage: "how long the workload and the faults last (default: 100s, 25s with --short)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the run's database (its logs are always kept)"},
			&cli.BoolFlag{Name: "quiet", Usage: "print only the report"},
			&cli.StringFlag{Name: flagDir, Usage: "local stack directory (as the global --dir)"},
		},
		Action: func(c *cli.Context) error {
			if c.Int64("seed") < 0 {
				return usagef("--seed %d: want 1 or more (0: a random one)", c.Int64("seed"))
			}
			dir, err := filepath.Abs(clusterDir(c))
			if err != nil {
				return err
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg := chaos.Full()
			if c.Bool("short") {
				cfg = chaos.Short()
			}
			cfg.Binary, cfg.StackDir, cfg.Seed, cfg.Keep = bin, dir, uint64(c.Int64("seed")), c.Bool("keep")
			if w := c.Duration("window"); w > 0 {
				cfg.Window = w
			}
			if !c.Bool("quiet") {
				cfg.Out = c.App.ErrWriter
			}
			rep, err := chaos.Run(c.Context, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer)
			rep.Print(c.App.Writer)
			if !rep.OK() {
				return cli.Exit(fmt.Sprintf("chaos: violations or faults not injected (seed %d)", rep.Seed), exitFailure)
			}
			return nil
		},
	}
}
