package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

func smtpSinkCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "smtp-sink",
		Usage: "run an SMTP server on loopback that accepts (or refuses, as told) every message: for demos and benchmarks",
		Description: `Counts what it accepts and prints a line every --every and when stopped. It listens on
loopback only. --answer scripts refusals: CODE[=ADDRESS|@DOMAIN|N%][:data][:times=N], e.g.
--answer 550=@bounce.example (hard bounces), --answer 451=10%:times=2 (a tenth of the
recipients refused twice, then accepted), --answer 552=big@x.example:data (after DATA).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:2525", Usage: "loopback host:port to listen on"},
			&cli.StringSliceFlag{Name: "answer", Usage: "a scripted refusal (repeat); the first that applies answers"},
			&cli.StringFlag{Name: "save", Usage: "write every accepted message to this folder as NNNNNNNN.eml"},
			&cli.DurationFlag{Name: "every", Value: 5 * time.Second, Usage: "how often to print the counts (0: only at the end)"},
		},
		Action: func(c *cli.Context) error {
			var rules []smtpsink.Rule
			for _, a := range c.StringSlice("answer") {
				r, err := smtpsink.ParseRule(a)
				if err != nil {
					return usagef("--answer: %v", err)
				}
				rules = append(rules, r)
			}
			if c.Duration("every") < 0 {
				return usagef("--every %v: want 0 or more", c.Duration("every"))
			}
			sink, err := smtpsink.Start(smtpsink.Config{Addr: c.String("addr"), Rules: rules, SaveDir: c.String("save")})
			if errors.Is(err, smtpsink.ErrNotLoopback) {
				return usagef("--addr: %v", err)
			}
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "smtp sink listening on %s (%s)\n", sink.Addr(), sink.URL())
			var tick <-chan time.Time
			if every := c.Duration("every"); every > 0 {
				t := time.NewTicker(every)
				defer t.Stop()
				tick = t.C
			}
			for {
				select {
				case <-tick:
					printSinkStats(w, sink.Stats())
				case <-c.Context.Done():
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					err := sink.Stop(ctx)
					printSinkStats(w, sink.Stats())
					return err
				}
			}
		},
	})
}

func printSinkStats(w io.Writer, s smtpsink.Stats) {
	fmt.Fprintf(w, "smtp sink: %d accepted (%d bytes), %d refused 4xx, %d refused 5xx, %d connections\n",
		s.Accepted, s.Bytes, s.Rejected4xx, s.Rejected5xx, s.Connections)
}
