package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

func messagesExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "hand a campaign's ready messages to a batch sender: NDJSON or .eml files, marked exported",
		Description: `Claims the campaign's ready messages a batch at a time (send time reached, campaign running
or rendered; recipients checked again for subscription, consent and suppression, the
ineligible marked suppressed), writes them and marks them exported, a final state: an export
run again writes only what is left. --format ndjson writes one JSON object per message
(recipient, subject, html, text, headers) to --out - (stdout) or to DIR/campaign-ID.ndjson
(appended); --format eml writes DIR/ID.eml, a complete RFC 5322 message (needs --from). A
batch that could not be written is not marked: its messages come back after 10 minutes.
Progress goes to stderr.`,
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "campaign", Aliases: []string{"c"}, Required: true, Usage: "campaign ID"},
			&cli.StringFlag{Name: "format", Value: "ndjson", Usage: "ndjson or eml"},
			&cli.StringFlag{Name: "out", Value: "-", Usage: "a folder, or - for stdout (ndjson only)"},
			&cli.StringFlag{Name: "from", EnvVars: []string{"TAILOR_FROM"}, Usage: "From header of .eml messages, e.g. \"Shop <news@shop.example>\""},
			&cli.IntFlag{Name: "batch", Value: 500, Usage: "messages per claim (1-500)"},
		},
		Action: func(c *cli.Context) error {
			format, out := c.String("format"), c.String("out")
			var mime *delivery.MIMEBuilder
			switch {
			case c.Int64("campaign") <= 0:
				return usagef("--campaign %d: want a campaign ID", c.Int64("campaign"))
			case c.Int("batch") < 1 || c.Int("batch") > delivery.ClaimBatchMax:
				return usagef("--batch %d: want 1 to %d", c.Int("batch"), delivery.ClaimBatchMax)
			case format != "ndjson" && format != "eml":
				return usagef("--format %q: want ndjson or eml", format)
			case format == "eml" && out == "-":
				return usagef("--format eml writes one file per message: give --out DIR")
			case format == "eml" && c.String("from") == "":
				return usagef("--format eml needs --from (the From header)")
			}
			if format == "eml" {
				var err error
				if mime, err = delivery.NewMIMEBuilder(delivery.MIMEConfig{From: c.String("from")}); err != nil {
					return usagef("--from: %v", err)
				}
			}
			if out != "-" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return usagef("--out: %v", err)
				}
			}
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			store, err := delivery.NewStore(delivery.StoreConfig{DB: b.Pool})
			if err != nil {
				return err
			}
			id := c.Int64("campaign")
			counts, err := store.Counts(c.Context, id)
			if err != nil {
				return err
			}
			var w io.Writer = c.App.Writer
			if format == "ndjson" && out != "-" {
				f, err := os.OpenFile(filepath.Join(out, fmt.Sprintf("campaign-%d.ndjson", id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriterSize(w, 256<<10)
			enc := json.NewEncoder(bw)
			progress := c.App.ErrWriter
			tty := isTerminal(progress)
			written, failed := 0, 0
			n, err := store.Export(c.Context, id, c.Int("batch"), func(msgs []delivery.Message) error {
				var bad []delivery.Outcome
				for _, m := range msgs {
					receipt := m.Receipt
					m.Receipt, m.LeaseExpires = "", time.Time{} // the export's own claim: nothing for the batch sender
					if format == "ndjson" {
						if err := enc.Encode(m); err != nil {
							return err
						}
						continue
					}
					raw, err := mime.Build(m)
					if errors.Is(err, delivery.ErrInvalidMessage) {
						// Not sendable as it is: failed with the reason, not exported.
						failed++
						fmt.Fprintf(progress, "message %d: %v\n", m.ID, err)
						bad = append(bad, delivery.Outcome{MessageID: m.ID, Receipt: receipt, Status: delivery.StatusFailed,
							Reason: truncateString(err.Error(), delivery.MaxReplyBytes)})
						continue
					}
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(out, strconv.FormatInt(m.ID, 10)+".eml"), raw, 0o644); err != nil {
						return err
					}
				}
				if err := bw.Flush(); err != nil {
					return err
				}
				if len(bad) > 0 {
					if _, err := store.Ack(c.Context, bad); err != nil {
						return err
					}
				}
				written += len(msgs)
				if tty {
					fmt.Fprintf(progress, "\r\033[K%s exported %d of %d", progressFraction(written, counts.Ready), written, counts.Ready)
				} else {
					fmt.Fprintf(progress, "exported %d of %d\n", written, counts.Ready)
				}
				return nil
			})
			if tty {
				fmt.Fprintln(progress)
			}
			if err != nil {
				return fmt.Errorf("export campaign %d: %w (%d exported before)", id, err, n)
			}
			fmt.Fprintf(progress, "campaign %d: %d messages exported as %s to %s", id, n, format, out)
			if failed > 0 {
				fmt.Fprintf(progress, " (%d could not be built as MIME: marked failed)", failed)
			}
			fmt.Fprintln(progress)
			return nil
		},
	}
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// progressFraction draws done/total as a bar of 24 cells.
func progressFraction(done, total int) string {
	frac := 1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	const width = 24
	full := int(frac * width)
	bar := make([]rune, 0, width)
	for i := range width {
		if i < full {
			bar = append(bar, '█')
		} else {
			bar = append(bar, '░')
		}
	}
	return fmt.Sprintf("[%s] %3.0f%%", string(bar), frac*100)
}
