package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Invariant is one checked property and its verdict.
type Invariant struct {
	Name   string
	Held   bool
	Detail string // counts when held, the first violations when not
}

// maxShown bounds the violations an invariant lists.
const maxShown = 5

func verdict(name string, bad []string, ok string) Invariant {
	if len(bad) == 0 {
		return Invariant{Name: name, Held: true, Detail: ok}
	}
	sort.Strings(bad)
	shown := bad[:min(len(bad), maxShown)]
	more := ""
	if len(bad) > maxShown {
		more = fmt.Sprintf(" (and %d more)", len(bad)-maxShown)
	}
	return Invariant{Name: name, Detail: fmt.Sprintf("%d violations: %s%s", len(bad), strings.Join(shown, "; "), more)}
}

// CheckEventCounts: every event accepted by the ingestion API is counted exactly once in its
// customer's profile. sent is the ground truth (distinct events per customer), counted what
// the profiles say.
func CheckEventCounts(sent map[string]int, counted map[string]int64) Invariant {
	var bad []string
	total := 0
	for id, n := range sent {
		total += n
		if got := counted[id]; got != int64(n) {
			bad = append(bad, fmt.Sprintf("%s: %d events sent, profile counts %d", id, n, got))
		}
	}
	for id, got := range counted {
		if _, ok := sent[id]; !ok && got != 0 {
			bad = append(bad, fmt.Sprintf("%s: no events sent, profile counts %d", id, got))
		}
	}
	return verdict("every event counted exactly once", bad, fmt.Sprintf("%d events over %d customers", total, len(sent)))
}

// CRMRow is the part of a customers row (or of a profile's CRM data) the harness compares.
type CRMRow struct {
	Email, FirstName, LastName, Country string
}

// CheckProfiles: after CDC caught up, every profile's CRM fields equal its customers row.
// A customer without a profile is a violation too.
func CheckProfiles(source map[string]CRMRow, profiles map[string]CRMRow) Invariant {
	var bad []string
	for id, want := range source {
		got, ok := profiles[id]
		switch {
		case !ok:
			bad = append(bad, id+": no profile")
		case got != want:
			bad = append(bad, fmt.Sprintf("%s: profile %+v, CRM %+v", id, got, want))
		}
	}
	return verdict("profiles equal their CRM rows", bad, fmt.Sprintf("%d profiles", len(source)))
}

// MessageRow is the campaign's rendered_messages rows of one customer.
type MessageRow struct {
	Rows     int
	Statuses []string
}

// CheckMessages: exactly one message row per audience member and none for anyone else; a
// recipient who never unsubscribed has a rendered one (a failing content API degrades, it
// does not fail or skip).
func CheckMessages(audience []string, unsubscribed map[string]time.Time, rows map[string]MessageRow) Invariant {
	var bad []string
	in := map[string]bool{}
	for _, id := range audience {
		in[id] = true
		r := rows[id]
		switch {
		case r.Rows == 0:
			bad = append(bad, id+": no message")
		case r.Rows > 1:
			bad = append(bad, fmt.Sprintf("%s: %d messages", id, r.Rows))
		default:
			if _, unsub := unsubscribed[id]; !unsub && r.Statuses[0] != "rendered" {
				bad = append(bad, fmt.Sprintf("%s: status %s (never unsubscribed)", id, r.Statuses[0]))
			}
		}
	}
	for id, r := range rows {
		if !in[id] {
			bad = append(bad, fmt.Sprintf("%s: %d messages, not in the audience", id, r.Rows))
		}
	}
	return verdict("exactly one message per eligible recipient", bad, fmt.Sprintf("%d recipients, %d unsubscribed during the run", len(audience), len(unsubscribed)))
}

// Claim is one message a sender got from a claim that started at Started.
type Claim struct {
	CustomerID string
	Started    time.Time
}

// CheckClaims: no claim that started after a recipient's unsubscribe was answered hands out a
// message to that recipient.
func CheckClaims(unsubscribed map[string]time.Time, claims []Claim) Invariant {
	var bad []string
	after := 0
	for _, c := range claims {
		at, ok := unsubscribed[c.CustomerID]
		if !ok {
			continue
		}
		if c.Started.After(at) {
			after++
			bad = append(bad, fmt.Sprintf("%s: claimed at %s, unsubscribed at %s", c.CustomerID, c.Started.Format("15:04:05.000"), at.Format("15:04:05.000")))
		}
	}
	return verdict("nothing claimed for an unsubscribed recipient", bad, fmt.Sprintf("%d messages claimed (never acked), %d unsubscribes", len(claims), len(unsubscribed)))
}

// CheckJobs: every River job of the run completed: none stuck (available, running,
// retryable, scheduled) and none given up (discarded after its attempts, or cancelled: the
// run cancels nothing, so a cancelled job is a worker that gave up on its work). byState
// counts jobs per state.
func CheckJobs(byState map[string]int) Invariant {
	var bad []string
	total := 0
	for state, n := range byState {
		total += n
		switch state {
		case "completed":
		default:
			bad = append(bad, fmt.Sprintf("%d jobs %s", n, state))
		}
	}
	if total == 0 {
		bad = append(bad, "no jobs at all (did the campaign run?)")
	}
	return verdict("no job lost or stuck", bad, fmt.Sprintf("%d jobs, all completed", total))
}

// CheckCampaigns: every campaign of the run finished rendered (none stuck running, failed or
// cancelled). statuses is by campaign id.
func CheckCampaigns(statuses map[int64]string) Invariant {
	var bad []string
	for id, st := range statuses {
		if st != "rendered" {
			bad = append(bad, fmt.Sprintf("campaign %d %s", id, st))
		}
	}
	if len(statuses) == 0 {
		bad = append(bad, "no campaign was created")
	}
	return verdict("every campaign rendered", bad, fmt.Sprintf("%d campaigns", len(statuses)))
}
