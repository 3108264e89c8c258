package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/migrations"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func migrateCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "migrate",
		Usage: "create or update the Postgres schema (River's and Tailor's) and the DynamoDB profiles table",
		Description: `Applies River's migrations and Tailor's embedded SQL migrations in order, under an
advisory lock, and prints each one it applied. Running it again applies nothing. It also
creates the DynamoDB profiles table when missing (skip with --skip-dynamodb).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "skip-dynamodb", EnvVars: []string{"TAILOR_MIGRATE_SKIP_DYNAMODB"}, Usage: "only migrate Postgres"},
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
			if !c.Bool("skip-dynamodb") {
				store := profile.NewStore(b.DynamoDB, b.Names.Profiles)
				if err := store.EnsureTable(c.Context); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "dynamodb table %s ready\n", b.Names.Profiles)
			}
			return nil
		},
	})
}
