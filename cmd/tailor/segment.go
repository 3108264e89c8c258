package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func segmentCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "segment",
		Usage: "check audience expressions and list the profile fields they can use",
		Subcommands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "type-check a segment expression against the profile fields",
				ArgsUsage: "EXPR",
				Description: `Compiles EXPR as 'campaign create --segment' does, without touching any backend. An
unknown field, an unknown event type in count_<type>... or a comparison of the wrong type is
an error pointing at the token (exit 2). Open CRM data is attributes.<name>; see
'tailor segment fields' for every field and its type.`,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("segment check: want one expression (quote it)")
					}
					seg, err := jobs.ParseSegment(c.Args().First())
					if err != nil {
						return usageError{err}
					}
					fmt.Fprintf(c.App.Writer, "ok: %s\nfields: %s\n", seg, strings.Join(seg.Fields(), ", "))
					return nil
				},
			},
			{
				Name:  "fields",
				Usage: "list every profile field segments and templates (customer.*) can read",
				Action: func(c *cli.Context) error {
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "FIELD\tTYPE\tSOURCE\tEXAMPLE")
					for _, f := range profile.FieldSpecs() {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, f.Type, f.Source, f.Example)
					}
					return w.Flush()
				},
			},
		},
	})
}
