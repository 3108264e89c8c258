package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
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
				Name:      "count",
				Usage:     "count the profiles a segment matches (exact, with a progress bar; --estimate from a sample)",
				ArgsUsage: "EXPR",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "estimate", Usage: "estimate from whole parallel-scan segments of about --sample profiles, scaled to the table"},
					&cli.IntFlag{Name: "sample", Value: 2000, Usage: "with --estimate: profiles read"},
				},
				Action: segmentAction(func(c *cli.Context, seg *jobs.Segment, profiles *jobs.DynamoProfiles) error {
					var n jobs.SegmentCount
					var err error
					if c.Bool("estimate") {
						items, err := profiles.ItemCount(c.Context)
						if err != nil {
							return err
						}
						if n, err = jobs.EstimateSegment(c.Context, profiles, seg, c.Int("sample"), items); err != nil {
							return err
						}
					} else {
						tty := isTerminal(c.App.ErrWriter)
						n, err = jobs.CountSegment(c.Context, profiles, seg, jobs.ScanSegmentsDefault, func(n jobs.SegmentCount) {
							if tty {
								fmt.Fprintf(c.App.ErrWriter, "\r\033[Kscanned %d, matched %d", n.Scanned, n.Matched)
							}
						})
						if tty {
							fmt.Fprintln(c.App.ErrWriter)
						}
						if err != nil {
							return err
						}
					}
					approx := ""
					if n.Estimated {
						approx = "~"
					}
					fmt.Fprintf(c.App.Writer, "%s%d profiles match (%s%d scanned, %s%d without an address, %s%d could not be evaluated)\n",
						approx, n.Matched, approx, n.Scanned, approx, n.Unreachable, approx, n.Errors)
					return nil
				}),
			},
			{
				Name:      "sample",
				Usage:     "print some profiles a segment matches: their key fields and the fields it reads",
				ArgsUsage: "EXPR",
				Flags:     []cli.Flag{&cli.IntFlag{Name: "n", Value: 5, Usage: "how many profiles"}},
				Action: segmentAction(func(c *cli.Context, seg *jobs.Segment, profiles *jobs.DynamoProfiles) error {
					ps, err := jobs.SampleSegment(c.Context, profiles, seg, c.Int("n"))
					if err != nil {
						return err
					}
					cols := []string{"customer_id", "email", "first_name", "country", "timezone"}
					for _, f := range seg.Fields() {
						if !slices.Contains(cols, f) {
							cols = append(cols, f)
						}
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, strings.ToUpper(strings.Join(cols, "\t")))
					now := time.Now()
					for _, p := range ps {
						fields := p.Fields(now)
						vals := make([]string, len(cols))
						for i, col := range cols {
							vals[i] = fmt.Sprint(fields[col])
						}
						fmt.Fprintln(w, strings.Join(vals, "\t"))
					}
					if len(ps) == 0 {
						fmt.Fprintln(c.App.ErrWriter, "no profile matches")
					}
					return w.Flush()
				}),
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

// segmentAction parses the segment argument, opens the profiles table and runs fn.
func segmentAction(fn func(c *cli.Context, seg *jobs.Segment, profiles *jobs.DynamoProfiles) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		seg, err := segmentArg(c)
		if err != nil {
			return err
		}
		b, err := openBackends(c)
		if err != nil {
			return err
		}
		defer b.Close()
		profiles, err := app.ProfileReader(c.Context, b)
		if err != nil {
			return err
		}
		return fn(c, seg, profiles)
	}
}

func segmentArg(c *cli.Context) (*jobs.Segment, error) {
	if c.NArg() != 1 {
		return nil, usagef("segment %s: want one expression (quote it)", c.Command.Name)
	}
	seg, err := jobs.ParseSegment(c.Args().First())
	if err != nil {
		return nil, usageError{err}
	}
	return seg, nil
}
