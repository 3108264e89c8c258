package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/events"
)

const (
	shardsDefault = 4
	maxLineBytes  = 2 << 20
)

func eventsCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "events",
		Usage: "send behavioural events to the stream",
		Subcommands: []*cli.Command{{
			Name:      "send",
			Usage:     "validate NDJSON events (one per line) from FILE or - (stdin) and put the valid ones on the stream",
			ArgsUsage: "FILE|-",
			Description: `Each line is one event (see the event schema: tailor events schema). Valid events go to
Kinesis (partition key = customer id); invalid lines are kept in dead_letters with the reason
(tailor deadletters list) and reported here with their line number. Exits 1 when any line was
rejected. Creates the stream with --shards shards when it does not exist.`,
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the stream must be created"},
				&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar or per-line rejections"},
			},
			Action: eventsSend,
		}, {
			Name:  "schema",
			Usage: "print the event JSON Schema",
			Action: func(c *cli.Context) error {
				_, err := c.App.Writer.Write(events.Schema)
				return err
			},
		}},
	})
}

func eventsSend(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("events send: want one argument, FILE or - for stdin")
	}
	var in io.Reader = os.Stdin
	total := int64(-1)
	if name := c.Args().First(); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("events send: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total = st.Size()
		}
		in = f
	}
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	ing, err := newIngestor(c, b)
	if err != nil {
		return err
	}
	progress := newProgress(c.App.ErrWriter, total, !c.Bool("quiet"))
	r := bufio.NewReaderSize(in, 64<<10)
	var batch [][]byte
	var lines []int
	var accepted, rejected, line int
	var read int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		results, err := ing.Ingest(c.Context, events.SourceCLI, batch)
		if err != nil {
			return err
		}
		for i, res := range results {
			if res.Status == events.StatusAccepted {
				accepted++
				continue
			}
			rejected++
			if !c.Bool("quiet") {
				progress.clear()
				fmt.Fprintf(c.App.ErrWriter, "line %d: rejected: %s\n", lines[i], res.Reason)
			}
		}
		batch, lines = batch[:0], lines[:0]
		progress.update(read, accepted, rejected)
		return nil
	}
	for {
		raw, err := readLine(r)
		read += int64(len(raw))
		if len(raw) > 0 {
			line++
			if t := trimLine(raw); len(t) > 0 {
				batch, lines = append(batch, t), append(lines, line)
			}
		}
		if len(batch) == events.MaxBatchEvents || (errors.Is(err, io.EOF) && len(batch) > 0) {
			if err := flush(); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("events send: read line %d: %w", line+1, err)
		}
	}
	progress.clear()
	fmt.Fprintf(c.App.Writer, "%d accepted, %d rejected\n", accepted, rejected)
	if rejected > 0 {
		return cli.Exit("some events were rejected: see 'tailor deadletters list --source "+events.SourceCLI+"'", exitFailure)
	}
	return nil
}

// readLine reads one line; a line longer than maxLineBytes is returned truncated to the limit
// (it will be rejected as too large and dead-lettered) and the rest is skipped.
func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(out) < maxLineBytes {
			out = append(out, chunk[:min(len(chunk), maxLineBytes-len(out))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return out, err
	}
}

func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return append([]byte(nil), b...)
}

func newIngestor(c *cli.Context, b *backends.Backends) (*events.Ingestor, error) {
	return app.Ingestor(c.Context, b, c.Int("shards"))
}

// progress draws a one-line progress bar on a terminal; elsewhere it stays silent.
type progress struct {
	w       io.Writer
	total   int64
	on      bool
	last    time.Time
	started time.Time
	drawn   bool
}

func newProgress(w io.Writer, total int64, enabled bool) *progress {
	on := false
	if f, ok := w.(*os.File); ok && enabled {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	return &progress{w: w, total: total, on: on, started: time.Now()}
}

func (p *progress) update(read int64, accepted, rejected int) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	rate := float64(accepted+rejected) / max(time.Since(p.started).Seconds(), 0.001)
	status := fmt.Sprintf(" %d accepted, %d rejected, %.0f/s", accepted, rejected, rate)
	if p.total > 0 {
		const width = 30
		done := int(float64(width) * float64(read) / float64(p.total))
		bar := make([]rune, width)
		for i := range bar {
			bar[i] = '-'
			if i < done {
				bar[i] = '='
			}
		}
		status = "[" + string(bar) + "] " + strconv.Itoa(int(100*read/p.total)) + "%" + status
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", status)
	p.drawn = true
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func deadLettersCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "deadletters",
		Usage: "inspect and replay refused inputs (invalid events, ...)",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list dead letters, newest first",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Usage: "only this source (events.api, events.cli, events.stream, ...)"},
				&cli.IntFlag{Name: "limit", Value: 50, Usage: "how many"},
				&cli.Int64Flag{Name: "before", Usage: "only ids below this (paging)"},
				&cli.BoolFlag{Name: "all", Usage: "include replayed ones"},
			},
			Action: func(c *cli.Context) error {
				b, err := openBackends(c)
				if err != nil {
					return err
				}
				defer b.Close()
				dls, err := deadletter.NewStore(b.Pool).List(c.Context, deadletter.Filter{
					Source: c.String("source"), BeforeID: c.Int64("before"), IncludeReplayed: c.Bool("all"), Limit: c.Int("limit"),
				})
				if err != nil {
					return err
				}
				for _, dl := range dls {
					state := ""
					if dl.ReplayedAt != nil {
						state = " (replayed)"
					}
					fmt.Fprintf(c.App.Writer, "%d\t%s\t%s\t%d bytes\t%s%s\n", dl.ID, dl.CreatedAt.Format(time.RFC3339), dl.Source, len(dl.Payload), dl.Reason, state)
				}
				return nil
			},
		}, {
			Name:      "show",
			Usage:     "print one dead letter: reason and raw payload",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				id, err := strconv.ParseInt(c.Args().First(), 10, 64)
				if err != nil || c.NArg() != 1 {
					return usagef("deadletters show: want one numeric ID")
				}
				b, err := openBackends(c)
				if err != nil {
					return err
				}
				defer b.Close()
				dl, err := deadletter.NewStore(b.Pool).Get(c.Context, id)
				if err != nil {
					return err
				}
				w := c.App.Writer
				fmt.Fprintf(w, "id:       %d\nsource:   %s\ncreated:  %s\nreason:   %s\n", dl.ID, dl.Source, dl.CreatedAt.Format(time.RFC3339), dl.Reason)
				if dl.ReplayedAt != nil {
					fmt.Fprintf(w, "replayed: %s\n", dl.ReplayedAt.Format(time.RFC3339))
				}
				if utf8.Valid(dl.Payload) {
					fmt.Fprintf(w, "payload (%d bytes):\n%s\n", len(dl.Payload), dl.Payload)
				} else {
					fmt.Fprintf(w, "payload (%d bytes, not UTF-8, quoted):\n%q\n", len(dl.Payload), dl.Payload)
				}
				return nil
			},
		}, {
			Name:      "replay",
			Usage:     "re-validate dead letters and send the valid ones to the stream",
			ArgsUsage: "ID...",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Usage: "with --all: only this source"},
				&cli.BoolFlag{Name: "all", Usage: "replay every dead letter not yet replayed (events sources)"},
				&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the stream must be created"},
			},
			Action: deadLettersReplay,
		}},
	})
}

func deadLettersReplay(c *cli.Context) error {
	var ids []int64
	for _, a := range c.Args().Slice() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return usagef("deadletters replay: %q is not an ID", a)
		}
		ids = append(ids, id)
	}
	if (len(ids) == 0) == !c.Bool("all") {
		return usagef("deadletters replay: give IDs or --all")
	}
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	dls := deadletter.NewStore(b.Pool)
	if c.Bool("all") {
		before := int64(0)
		for {
			page, err := dls.List(c.Context, deadletter.Filter{Source: c.String("source"), BeforeID: before, Limit: 500})
			if err != nil {
				return err
			}
			for _, dl := range page {
				if dl.Source == events.SourceAPI || dl.Source == events.SourceCLI || dl.Source == events.SourceStream {
					ids = append(ids, dl.ID)
				}
			}
			if len(page) < 500 {
				break
			}
			before = page[len(page)-1].ID
		}
	}
	ing, err := newIngestor(c, b)
	if err != nil {
		return err
	}
	results, err := events.Replay(c.Context, dls, ing.Stream, ids, events.DecodeOptions{})
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if r.Accepted {
			fmt.Fprintf(c.App.Writer, "%d\treplayed\n", r.ID)
		} else {
			failed++
			fmt.Fprintf(c.App.Writer, "%d\tstill rejected: %s\n", r.ID, r.Reason)
		}
	}
	if failed > 0 {
		return cli.Exit(fmt.Sprintf("%d of %d dead letters are still rejected", failed, len(results)), exitFailure)
	}
	return nil
}
