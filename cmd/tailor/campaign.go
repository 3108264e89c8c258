package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/templates"
)

func campaignCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "campaign",
		Usage: "create and watch campaigns",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a campaign from a template folder and an audience segment, and start it",
				ArgsUsage: " ",
				Description: `Copies the template (validated first) into the campaign and enqueues its start job in
the same transaction; 'tailor work' processes fan it out and render it. The segment is an
expr-lang expression over profile fields, e.g.
   --segment 'true'                                  everyone with an email address
   --segment 'country == "FR" && count_product_view >= 3'`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "template", Aliases: []string{"t"}, Required: true, Usage: "a published template, NAME or NAME@VERSION (default: its latest version), or a template folder"},
					&cli.StringFlag{Name: "segment", Aliases: []string{"s"}, Required: true, Usage: "audience expression over profile fields"},
					&cli.StringFlag{Name: "name", Usage: "campaign name (default: the template's name)"},
					&cli.BoolFlag{Name: "wait", Usage: "wait until the campaign is rendered (needs 'tailor work' running)"},
					&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "with --wait: give up after this long"},
				},
				Action: func(c *cli.Context) error {
					if _, err := jobs.ParseSegment(c.String("segment")); err != nil {
						return usageError{fmt.Errorf("--segment: %w", err)}
					}
					tpl, err := campaignTemplate(c, nil, c.String("template"))
					if err != nil {
						return err
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					if tpl == nil {
						if tpl, err = campaignTemplate(c, b.Pool, c.String("template")); err != nil {
							return err
						}
					}
					rc, err := jobs.NewInsertClient(b.Pool)
					if err != nil {
						return err
					}
					camp, err := jobs.CreateCampaign(c.Context, b.Pool, rc, jobs.NewCampaign{Name: c.String("name"), Template: tpl, Segment: c.String("segment")})
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "campaign %d created: template %s v%d, segment %s\n", camp.ID, camp.TemplateName, camp.TemplateVersion, camp.Segment)
					if !c.Bool("wait") {
						return nil
					}
					ctx, cancel := contextWithTimeout(c, c.Duration("timeout"))
					defer cancel()
					done, err := jobs.WaitCampaign(ctx, b.Pool, camp.ID)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "campaign %d %s: audience %d\n", done.ID, done.Status, done.AudienceCount)
					if done.Status == jobs.StatusFailed {
						return errors.New(done.Error)
					}
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list campaigns, newest first, with their counts",
				Flags: []cli.Flag{&cli.IntFlag{Name: "limit", Value: 20, Usage: "how many"}},
				Action: func(c *cli.Context) error {
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					list, err := jobs.ListCampaigns(c.Context, b.Pool, c.Int("limit"))
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tTEMPLATE\tSTATUS\tAUDIENCE\tRENDERED\tSKIPPED\tCREATED")
					for _, s := range list {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.Name, s.Template, s.Status, s.Audience, s.Rendered, s.Skipped, s.CreatedAt.Format(time.RFC3339))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "show",
				Usage:     "show one campaign",
				ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id, err := strconv.ParseInt(c.Args().First(), 10, 64)
					if err != nil || c.NArg() != 1 {
						return usagef("campaign show: want one campaign ID, e.g. tailor campaign show 3")
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					camp, err := jobs.GetCampaign(c.Context, b.Pool, id)
					if err != nil {
						return err
					}
					w := c.App.Writer
					fmt.Fprintf(w, "campaign %d %q\n  template  %s v%d\n  segment   %s\n  status    %s\n  audience  %d\n", camp.ID, camp.Name, camp.TemplateName, camp.TemplateVersion, camp.Segment, camp.Status, camp.AudienceCount)
					if camp.Error != "" {
						fmt.Fprintf(w, "  error     %s\n", camp.Error)
					}
					return nil
				},
			},
		},
	})
}

// campaignTemplate resolves --template: an existing folder (or anything with a slash in it) is
// loaded and validated as it is; anything else names a published version, NAME or NAME@VERSION
// (default: the latest). It is called before connecting, with db nil, to refuse a bad folder
// early; then again with the database for published names.
func campaignTemplate(c *cli.Context, db templates.DB, ref string) (*templates.Template, error) {
	if info, err := os.Stat(ref); (err == nil && info.IsDir()) || strings.ContainsRune(ref, os.PathSeparator) {
		tpl, err := templates.Load(ref)
		if err != nil {
			return nil, usageError{fmt.Errorf("--template: %w", err)}
		}
		return tpl, nil
	}
	if db == nil {
		return nil, nil
	}
	return publishedTemplate(c, db, ref)
}

func publishedTemplate(c *cli.Context, db templates.DB, ref string) (*templates.Template, error) {
	name, ver, hasVer := strings.Cut(ref, "@")
	store := templates.NewStore(db)
	var (
		tpl *templates.Template
		err error
	)
	if hasVer {
		v, perr := strconv.Atoi(ver)
		if perr != nil || v < 1 {
			return nil, usagef("--template %q: the version after @ must be a positive number", ref)
		}
		tpl, _, err = store.Get(c.Context, name, v)
	} else {
		tpl, _, err = store.Latest(c.Context, name)
	}
	if errors.Is(err, templates.ErrVersionNotFound) {
		return nil, usagef("--template %q: no such folder, and no published template by that name (publish one with 'tailor template publish DIR')", ref)
	}
	return tpl, err
}
