package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/migrations"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func migrateCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "migrate",
		Usage: "create or update the Postgres schema (River's and Tailor's), the DynamoDB tables and the Kinesis stream",
		Description: `Applies River's migrations and Tailor's embedded SQL migrations in order, under an
advisory lock, and prints each one it applied. Running it again applies nothing. It also
creates what is missing of the DynamoDB profiles and leases tables and the Kinesis event stream
(--shards shards), so the other processes need no permission to create resources (skip with
--skip-aws).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "skip-aws", Aliases: []string{"skip-dynamodb"}, EnvVars: []string{"TAILOR_MIGRATE_SKIP_AWS"}, Usage: "only migrate Postgres"},
			&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the event stream must be created"},
		},
		Action: func(c *cli.Context) error {
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			applied, err := migrations.Up(c.Context, b.Pool)
			if err != nil {
				return err
			}
			for _, a := range applied {
				fmt.Fprintln(c.App.Writer, "applied", a)
			}
			if len(applied) == 0 {
				fmt.Fprintf(c.App.Writer, "schema is current (version %d)\n", migrations.Latest())
			}
			if c.Bool("skip-aws") {
				return nil
			}
			if err := profile.NewStore(b.DynamoDB, b.Names.Profiles).EnsureTable(c.Context); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "dynamodb table %s ready\n", b.Names.Profiles)
			if err := stream.NewLeaseTable(b.DynamoDB, b.Names.Leases).EnsureTable(c.Context); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "dynamodb table %s ready\n", b.Names.Leases)
			if err := stream.EnsureStream(c.Context, b.Kinesis, b.Names.Stream, c.Int("shards")); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "kinesis stream %s ready\n", b.Names.Stream)
			return nil
		},
	})
}
