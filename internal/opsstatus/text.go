package opsstatus

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report as the operator's screen: one block per section, a section
// that is down shown as DOWN with its error.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := "OK"
	if len(r.Down) > 0 {
		state = "DEGRADED: down " + strings.Join(r.Down, ", ")
	}
	fmt.Fprintf(tw, "tailor status at %s  %s\n", r.At.Format(time.RFC3339), state)

	head(tw, "ENDPOINTS", Section{Up: true})
	for _, e := range r.Endpoints {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.Name, cmpStr(e.Address, "-"), upDown(e.Section, fmt.Sprintf("up (%.1f ms)", e.LatencyMS)))
	}

	if head(tw, "STREAM "+r.Stream.Stream, r.Stream.Section) {
		fmt.Fprintln(tw, "  SHARD\tOWNER\tLEASE\tITERATOR AGE\tREPORTED\tCHECKPOINTED")
		for _, s := range r.Stream.Shards {
			lease := "free"
			switch {
			case s.Finished:
				lease = "finished"
			case s.Held:
				lease = "held"
			case s.Owner != "":
				lease = "expired"
			}
			age, reported, ckpt := "-", "-", "-"
			if s.IteratorAgeSeconds != nil {
				age = seconds(*s.IteratorAgeSeconds)
				reported = ago(r.At, *s.LagReportedAt)
			}
			if s.CheckpointedAt != nil {
				ckpt = ago(r.At, *s.CheckpointedAt)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.ShardID, cmpStr(s.Owner, "-"), lease, age, reported, ckpt)
		}
		if len(r.Stream.Shards) == 0 {
			fmt.Fprintln(tw, "  no leases yet (no consumer has run)")
		}
	}

	if head(tw, "CDC slot "+r.CDC.Slot, r.CDC.Section) {
		if !r.CDC.Exists {
			fmt.Fprintln(tw, "  slot does not exist: start tailor cdc to create it")
		} else {
			lagS := "seconds unknown: not streaming"
			if r.CDC.LagSeconds != nil {
				lagS = seconds(*r.CDC.LagSeconds)
			}
			fmt.Fprintf(tw, "  active %t\tlag %s (%s)\tretained WAL %s\twal_status %s\tconfirmed %s\n", r.CDC.Active,
				bytes(r.CDC.LagBytes), lagS, bytes(r.CDC.RetainedWALBytes), r.CDC.WALStatus, r.CDC.ConfirmedLSN)
		}
	}

	if head(tw, "QUEUES (River)", r.Queues.Section) {
		fmt.Fprintln(tw, "  QUEUE\tKIND\tAVAILABLE\tSCHEDULED\tRETRYABLE\tRUNNING\tOLDEST DUE\tLONGEST RUNNING")
		for _, k := range r.Queues.Kinds {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", k.Queue, k.Kind, k.Available, k.Scheduled, k.Retryable, k.Running,
				seconds(k.OldestDueSeconds), seconds(k.LongestRunningSeconds))
		}
		if len(r.Queues.Kinds) == 0 {
			fmt.Fprintln(tw, "  no unfinished jobs")
		}
	}

	if head(tw, "CAMPAIGNS in flight", r.Campaigns.Section) {
		fmt.Fprintln(tw, "  ID\tNAME\tKIND\tSTATUS\tPROGRESS\tRENDERED\tEXCLUDED\tSKIPPED\tFAILED\tFALLBACKS")
		for _, c := range r.Campaigns.Campaigns {
			progress := fmt.Sprintf("%d/%d %.0f%%", c.Processed, c.Audience, c.Percent)
			if !c.FanoutDone && c.Kind == "batch" {
				progress += " (scanning)"
			}
			var fb []string
			for _, name := range slices.Sorted(maps.Keys(c.Fallbacks)) {
				fb = append(fb, fmt.Sprintf("%s %d", name, c.Fallbacks[name]))
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", c.ID, c.Name, c.Kind, c.Status, progress,
				c.Rendered, c.Excluded, c.Skipped, c.Failed, cmpStr(strings.Join(fb, ", "), "-"))
		}
		if len(r.Campaigns.Campaigns) == 0 {
			fmt.Fprintln(tw, "  none")
		}
	}

	if head(tw, "DEAD LETTERS", r.DeadLetters.Section) {
		fmt.Fprintln(tw, "  SOURCE\tPENDING\tTOTAL\tNEWEST")
		for _, d := range r.DeadLetters.Sources {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", d.Source, d.Pending, d.Total, ago(r.At, d.Newest))
		}
		if len(r.DeadLetters.Sources) == 0 {
			fmt.Fprintln(tw, "  none")
		}
	}

	if head(tw, "CONTENT BREAKERS", r.Breakers.Section) || r.Breakers.From != "" {
		fmt.Fprintf(tw, "  from %s\n", r.Breakers.From)
		for _, b := range r.Breakers.Breakers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", b.Source, b.State, b.Instance)
		}
	}

	if head(tw, "SENDERS (rendered messages not delivered)", r.Senders.Section) {
		fmt.Fprintf(tw, "  ready %d\tleased %d\texpired leases %d\twaiting %d\toldest ready %s\n",
			r.Senders.Ready, r.Senders.Leased, r.Senders.Expired, r.Senders.Waiting, seconds(r.Senders.OldestReadySeconds))
	}
	return tw.Flush()
}

// head writes a section's title (with DOWN and the error when it is down) and reports
// whether its body should follow.
func head(w io.Writer, title string, s Section) bool {
	if s.Up {
		fmt.Fprintf(w, "\n%s\n", title)
		return true
	}
	fmt.Fprintf(w, "\n%s  DOWN: %s\n", title, s.Error)
	return false
}

func upDown(s Section, up string) string {
	if s.Up {
		return up
	}
	return "DOWN: " + s.Error
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
