// Command tailor is Tailor's CLI: the local stack, migrations, workers, the HTTP server and the
// marketer's commands. It only wires packages together; behaviour lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/backends"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error the user fixes by changing the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	notFound := false
	app.CommandNotFound = func(_ *cli.Context, name string) {
		fmt.Fprintf(stderr, "tailor: unknown command %q; run 'tailor --help' for the list\n", name)
		notFound = true
	}
	err := app.RunContext(ctx, args)
	if notFound {
		return exitUsage
	}
	if err == nil {
		return exitOK
	}
	var ue usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue), isFlagError(err):
		fmt.Fprintln(stderr, "tailor:", err)
		fmt.Fprintln(stderr, "Run 'tailor --help' or 'tailor COMMAND --help' for usage.")
		return exitUsage
	case errors.As(err, &ec):
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "tailor:", msg)
		}
		return ec.ExitCode()
	default:
		fmt.Fprintln(stderr, "tailor:", err)
		return exitFailure
	}
}

// isFlagError recognises urfave/cli's own parse errors, which it does not type.
func isFlagError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"flag provided but not defined", "Required flag", "Required flags", "invalid value", "flag needs an argument"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Global flag names.
const (
	flagDir         = "dir"
	flagDatabaseURL = "database-url"
	flagPrefix      = "prefix"
	flagRealAWS     = "real-aws"
	flagLogLevel    = "log-level"
	flagLogFormat   = "log-format"
)

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "tailor",
		Usage: "personalised email at scale: events and CRM data in, rendered messages out",
		Description: `Tailor turns behavioural events (Kinesis) and CRM data (Postgres, through change data
capture) into per-customer profiles (DynamoDB), and renders Liquid email templates for
campaign audiences with River jobs.

Start here:
   tailor dev up          start the local stack (Postgres, Kinesis and DynamoDB emulators)
   tailor migrate         create or update the database schema
   tailor demo            seed sample data and run a campaign end to end

Every flag can also be set with the environment variable shown in [brackets]. With
'tailor dev up' running, commands find the stack by themselves; without it they use the
AWS SDK's standard configuration and --database-url.`,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagDir, EnvVars: []string{"TAILOR_DIR"}, Usage: "local stack directory holding state.json (default: .tailor here or in a parent directory)"},
			&cli.StringFlag{Name: flagDatabaseURL, EnvVars: []string{"TAILOR_DATABASE_URL"}, Usage: "Postgres URL (default: the local stack's)"},
			&cli.StringFlag{Name: flagPrefix, EnvVars: []string{"TAILOR_PREFIX"}, Value: backends.PrefixDefault, Usage: "prefix of DynamoDB tables, the Kinesis stream and the replication slot"},
			&cli.BoolFlag{Name: flagRealAWS, EnvVars: []string{"TAILOR_REAL_AWS"}, Usage: "ignore any local stack: use the AWS SDK's standard configuration (AWS_ENDPOINT_URL_KINESIS / _DYNAMODB honoured)"},
			&cli.StringFlag{Name: flagLogLevel, EnvVars: []string{"TAILOR_LOG_LEVEL"}, Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: flagLogFormat, EnvVars: []string{"TAILOR_LOG_FORMAT"}, Value: "text", Usage: "text or json"},
		},
		Before: func(c *cli.Context) error {
			logger, err := newLogger(c, stderr)
			if err != nil {
				return err
			}
			slog.SetDefault(logger)
			return nil
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		// run maps errors to exit codes; urfave/cli must not call os.Exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			devCommand(),
			migrateCommand(),
			workCommand(),
			serveCommand(),
			apikeyCommand(),
			campaignCommand(),
			segmentCommand(),
			messagesCommand(),
			demoCommand(),
			cdcCommand(),
			eventsCommand(),
			consumeCommand(),
			deadLettersCommand(), templateCommand(), contentCommand(),
			topicCommand(), webhookCommand(), customerCommand(),
			smtpSinkCommand(), statusCommand(),
			relayCommand(),
		},
	}
	addEnvVars(app.Commands, "TAILOR_")
	return app
}

func newLogger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String(flagLogLevel))); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.String(flagLogLevel))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String(flagLogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef("--log-format %q: want text or json", c.String(flagLogFormat))
	}
}

// openBackends connects to Postgres, Kinesis and DynamoDB as the global flags say.
func openBackends(c *cli.Context) (*backends.Backends, error) {
	return backends.Open(c.Context, backends.Config{
		DatabaseURL: c.String(flagDatabaseURL),
		StackDir:    c.String(flagDir),
		Prefix:      c.String(flagPrefix),
		NoStack:     c.Bool(flagRealAWS),
	})
}

// withUsageErrors makes a command's flag errors exit with the usage code.
func withUsageErrors(cmd *cli.Command) *cli.Command {
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	for _, sub := range cmd.Subcommands {
		withUsageErrors(sub)
	}
	return cmd
}

// addEnvVars gives every flag that has no environment variable one named after its command
// path, e.g. --template of `campaign create` -> TAILOR_CAMPAIGN_CREATE_TEMPLATE, so every flag
// can be set from the environment and --help shows the variable.
func addEnvVars(cmds []*cli.Command, path string) {
	for _, cmd := range cmds {
		p := path + strings.ToUpper(strings.ReplaceAll(cmd.Name, "-", "_")) + "_"
		for _, f := range cmd.Flags {
			if vars := envVarsOf(f); vars != nil && len(*vars) == 0 {
				*vars = []string{p + strings.ToUpper(strings.ReplaceAll(f.Names()[0], "-", "_"))}
			}
		}
		addEnvVars(cmd.Subcommands, p)
	}
}

// envVarsOf returns a pointer to a flag's EnvVars, for the flag types this CLI uses.
func envVarsOf(f cli.Flag) *[]string {
	switch f := f.(type) {
	case *cli.StringFlag:
		return &f.EnvVars
	case *cli.IntFlag:
		return &f.EnvVars
	case *cli.Int64Flag:
		return &f.EnvVars
	case *cli.UintFlag:
		return &f.EnvVars
	case *cli.Float64Flag:
		return &f.EnvVars
	case *cli.BoolFlag:
		return &f.EnvVars
	case *cli.DurationFlag:
		return &f.EnvVars
	case *cli.StringSliceFlag:
		return &f.EnvVars
	}
	return nil
}
