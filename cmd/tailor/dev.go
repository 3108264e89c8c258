package main

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/localstack"
)

// stackDir is where dev commands keep the stack: --dir, else an existing .tailor found upwards,
// else ./.tailor.
func stackDir(c *cli.Context) string {
	if d := c.String(flagDir); d != "" {
		return d
	}
	if d, ok := localstack.Find(); ok {
		return d
	}
	return localstack.DirDefault
}

func devCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "dev",
		Usage: "run the local stack: Postgres, Kinesis and DynamoDB emulators on loopback",
		Description: `The local stack is a private Postgres cluster (wal_level=logical) plus npm emulators:
kinesalite (or kinesis-mock) for Kinesis and dynalite for DynamoDB, each on a free
127.0.0.1 port, logs in <dir>/logs. With TAILOR_LOCALSTACK=docker and a Docker engine,
LocalStack runs Kinesis and DynamoDB instead. Data lives only as long as the stack.`,
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "start the local stack (idempotent) and print its endpoints",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "kinesis-emulator", EnvVars: []string{"TAILOR_KINESIS_EMULATOR"}, Value: localstack.EmulatorKinesalite, Usage: "kinesalite (fast) or kinesis-mock (the engine LocalStack runs; slow, faithful)"},
					&cli.StringFlag{Name: "backend", EnvVars: []string{"TAILOR_LOCALSTACK"}, Value: localstack.BackendNPM, Usage: "npm (emulators from npm) or docker (LocalStack through testcontainers; needs Docker)"},
				},
				Action: func(c *cli.Context) error {
					s, err := localstack.Start(c.Context, localstack.Config{
						Dir: stackDir(c), Detached: true,
						Backend: c.String("backend"), KinesisEmulator: c.String("kinesis-emulator"),
						Log: func(f string, a ...any) { fmt.Fprintf(c.App.ErrWriter, "dev: "+f+"\n", a...) },
					})
					if err != nil {
						return err
					}
					printState(c, s.State())
					return nil
				},
			},
			{
				Name:  "down",
				Usage: "stop the local stack and delete its data (idempotent)",
				Action: func(c *cli.Context) error {
					dir := stackDir(c)
					if _, err := localstack.Load(dir); errors.Is(err, localstack.ErrNotRunning) {
						fmt.Fprintln(c.App.Writer, "local stack is not running")
						return nil
					}
					if err := localstack.Down(c.Context, dir); err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, "local stack stopped")
					return nil
				},
			},
			{
				Name:  "status",
				Usage: "show the local stack's endpoints and whether each service answers (exit 1 if not)",
				Action: func(c *cli.Context) error {
					st, err := localstack.Load(stackDir(c))
					if err != nil {
						return cli.Exit(err.Error(), exitFailure)
					}
					printState(c, st)
					errs := st.Check(c.Context)
					for _, e := range errs {
						fmt.Fprintln(c.App.Writer, "  DOWN:", e)
					}
					if len(errs) > 0 {
						return cli.Exit("local stack is unhealthy: run `tailor dev down && tailor dev up`", exitFailure)
					}
					fmt.Fprintln(c.App.Writer, "  all services answer")
					return nil
				},
			},
			{
				Name:  "env",
				Usage: "print shell exports for the stack: eval $(tailor dev env)",
				Action: func(c *cli.Context) error {
					st, err := localstack.Load(stackDir(c))
					if err != nil {
						return err
					}
					for _, kv := range st.Env() {
						k, v, _ := strings.Cut(kv, "=")
						fmt.Fprintf(c.App.Writer, "export %s=%s\n", k, shellQuote(v))
					}
					return nil
				},
			},
			{
				Name:      "restart",
				Usage:     "restart one service of the running stack: postgres (a fast shutdown, then a start on the same port and data)",
				ArgsUsage: "postgres",
				Description: `Every session is cut, as a real database restart or failover does; the processes
using the stack reconnect by themselves. kinesis and dynamodb cannot be restarted: the
emulators keep their data in memory (the chaos harness stalls them with SIGSTOP instead).`,
				Action: func(c *cli.Context) error {
					switch c.Args().First() {
					case "postgres":
					case "kinesis", "dynamodb":
						return usagef("dev restart %s: the emulators keep their data in memory, a restart would lose it", c.Args().First())
					default:
						return usagef("dev restart: want postgres")
					}
					st, err := localstack.RestartPostgres(c.Context, stackDir(c))
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "postgres restarted (pid %d)\n", st.Postgres.PID)
					return nil
				},
			},
			devClusterCommand(),
			devChaosCommand(),
		},
	})
}

func printState(c *cli.Context, st *localstack.State) {
	w := c.App.Writer
	fmt.Fprintf(w, "local stack in %s (%s backend, started %s)\n", st.Dir, st.Backend, st.StartedAt.Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(w, "  postgres  %s  (PostgreSQL %s, pid %d, run as %s)\n", st.Postgres.URL, cmp.Or(st.Postgres.Version, "?"), st.Postgres.PID, st.Postgres.OSUser)
	fmt.Fprintf(w, "  kinesis   %s  (%s)\n", st.Kinesis.URL, st.Kinesis.Emulator)
	fmt.Fprintf(w, "  dynamodb  %s  (%s)\n", st.DynamoDB.URL, st.DynamoDB.Emulator)
	fmt.Fprintf(w, "  logs      %s/logs\n", st.Dir)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
