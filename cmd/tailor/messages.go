package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/jobs"
)

func contextWithTimeout(c *cli.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, d)
}

func messagesCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "messages",
		Usage: "inspect rendered messages",
		Subcommands: []*cli.Command{
			messagesExportCommand(),
			{
				Name:  "list",
				Usage: "list a campaign's rendered messages",
				Flags: []cli.Flag{
					&cli.Int64Flag{Name: "campaign", Aliases: []string{"c"}, Required: true, Usage: "campaign ID"},
					&cli.IntFlag{Name: "limit", Value: 20, Usage: "how many messages (0: all)"},
					&cli.Int64Flag{Name: "after", Usage: "only messages with an ID above this (paging)"},
					&cli.StringFlag{Name: "format", Value: "summary", Usage: "summary, text (subject + text part), html, or json (NDJSON, everything)"},
				},
				Action: func(c *cli.Context) error {
					format := c.String("format")
					switch format {
					case "summary", "text", "html", "json":
					default:
						return usagef("--format %q: want summary, text, html or json", format)
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					limit, after, shown := c.Int("limit"), c.Int64("after"), 0
					for {
						page := 500
						if limit > 0 {
							page = min(page, limit-shown)
						}
						if page <= 0 {
							return nil
						}
						msgs, err := jobs.ListMessages(c.Context, b.Pool, c.Int64("campaign"), after, page)
						if err != nil {
							return err
						}
						for _, m := range msgs {
							printMessage(c, format, m)
						}
						shown += len(msgs)
						if len(msgs) < page {
							if shown == 0 {
								fmt.Fprintf(c.App.ErrWriter, "no messages for campaign %d (is 'tailor work' running?)\n", c.Int64("campaign"))
							}
							return nil
						}
						after = msgs[len(msgs)-1].ID
					}
				},
			},
		},
	})
}

func printMessage(c *cli.Context, format string, m jobs.Message) {
	w := c.App.Writer
	switch format {
	case "json":
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": m.ID, "campaign_id": m.CampaignID, "customer_id": m.CustomerID, "email": m.Email, "status": m.Status,
			"subject": m.Subject, "preheader": m.Preheader, "html": m.HTML, "text": m.Text, "provenance": m.Provenance,
			"reason": m.Reason, "created_at": m.CreatedAt,
		})
	case "summary":
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s%s\n", m.ID, m.CustomerID, m.Email, m.Status, m.Subject, reasonSuffix(m.Reason))
	default:
		body := m.Text
		if format == "html" {
			body = m.HTML
		}
		fmt.Fprintf(w, "──── message %d to %s <%s> [%s]%s\nSubject: %s\n\n%s\n\n", m.ID, m.CustomerID, m.Email, m.Status, reasonSuffix(m.Reason), m.Subject, body)
	}
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}
