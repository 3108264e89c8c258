package main

import (
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/demo"
)

func demoCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "demo",
		Usage: "seed sample data and run the pipeline end to end: CDC, events, campaign, rendering, delivery",
		Description: `Inserts sample customers in Postgres and product views on Kinesis, runs CDC, the
Kinesis consumer, a demo content service and River workers in this process, creates a
campaign from the welcome template, waits until it is rendered and prints some emails, then
delivers it with the relay of 'tailor relay' to an in-repo SMTP sink on 127.0.0.1 (the
recipient the demo unsubscribes in one click is suppressed at claim).
Run 'tailor dev up' and 'tailor migrate' first (make demo does).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "template", Value: "templates/examples/welcome", Usage: "template folder"},
			&cli.IntFlag{Name: "customers", Value: demo.CustomersDefault, Usage: "customers to seed (1-10000)"},
			&cli.StringFlag{Name: "segment", Value: demo.SegmentDefault, Usage: "campaign audience"},
			&cli.IntFlag{Name: "show", Value: 3, Usage: "rendered emails to print"},
			&cli.Float64Flag{Name: "content-error-rate", Usage: "fraction of content requests the demo service fails (0-1), to see fallbacks"},
			&cli.DurationFlag{Name: "timeout", Value: demo.TimeoutDefault, Usage: "give up after this long"},
		},
		Action: func(c *cli.Context) error {
			if r := c.Float64("content-error-rate"); r < 0 || r > 1 {
				return usagef("--content-error-rate %v: want a fraction between 0 and 1", r)
			}
			if n := c.Int("customers"); n < 1 || n > 10000 {
				return usagef("--customers %d: want 1 to 10000", n)
			}
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			_, err = demo.Run(c.Context, b, demo.Config{
				TemplateDir: c.String("template"), Customers: c.Int("customers"), Segment: c.String("segment"),
				Show: c.Int("show"), Timeout: c.Duration("timeout"), ContentErrorRate: c.Float64("content-error-rate"),
				Out: c.App.Writer,
			})
			return err
		},
	})
}
