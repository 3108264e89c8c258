package chaos

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// check waits (up to Settle each) for the system to catch up, then takes every verdict.
func (r *run) check(ctx context.Context, ids []string) []Invariant {
	r.mu.Lock()
	sent := maps.Clone(r.sent)
	unsub := maps.Clone(r.unsubAt)
	claims := append([]Claim(nil), r.claims...)
	campaigns := append([]int64(nil), r.campaigns...)
	r.mu.Unlock()
	store := profile.NewStore(r.b.DynamoDB, r.b.Names.Profiles)

	settle := func(measure func() Invariant) Invariant {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.Settle)
		defer cancel()
		var inv Invariant
		_ = poll(sctx, func() (bool, error) {
			inv = measure()
			return inv.Held, nil
		})
		return inv
	}
	unreadable := func(name string, err error) Invariant {
		return Invariant{Name: name, Detail: "could not read: " + err.Error()}
	}
	var out []Invariant
	out = append(out, settle(func() Invariant {
		got, err := r.profiles(ctx, store, ids)
		if err != nil {
			return unreadable("every event counted exactly once", err)
		}
		counted := map[string]int64{}
		for id, p := range got {
			if n := p.Behaviour.Counts[events.TypeProductView]; n != 0 {
				counted[id] = n
			}
		}
		return CheckEventCounts(sent, counted)
	}))
	out = append(out, settle(func() Invariant {
		source := map[string]CRMRow{}
		rows, err := r.b.Pool.Query(ctx, `SELECT id, email, first_name, last_name, country FROM customers`)
		if err != nil {
			return unreadable("profiles equal their CRM rows", err)
		}
		for rows.Next() {
			var id string
			var c CRMRow
			if err := rows.Scan(&id, &c.Email, &c.FirstName, &c.LastName, &c.Country); err != nil {
				rows.Close()
				return unreadable("profiles equal their CRM rows", err)
			}
			source[id] = c
		}
		rows.Close()
		got, err := r.profiles(ctx, store, ids)
		if err != nil {
			return unreadable("profiles equal their CRM rows", err)
		}
		profiles := map[string]CRMRow{}
		for id, p := range got {
			profiles[id] = CRMRow{Email: p.CRM.Email, FirstName: p.CRM.FirstName, LastName: p.CRM.LastName, Country: p.CRM.Country}
		}
		return CheckProfiles(source, profiles)
	}))
	for _, campaign := range campaigns {
		inv := settle(func() Invariant {
			rows, err := r.b.Pool.Query(ctx, `SELECT customer_id, count(*), array_agg(status::text) FROM rendered_messages WHERE campaign_id = $1 GROUP BY customer_id`, campaign)
			if err != nil {
				return unreadable("exactly one message per eligible recipient", err)
			}
			got := map[string]MessageRow{}
			for rows.Next() {
				var id string
				var m MessageRow
				if err := rows.Scan(&id, &m.Rows, &m.Statuses); err != nil {
					rows.Close()
					return unreadable("exactly one message per eligible recipient", err)
				}
				got[id] = m
			}
			rows.Close()
			return CheckMessages(ids, unsub, got)
		})
		inv.Name += fmt.Sprintf(" (campaign %d)", campaign)
		out = append(out, inv)
	}
	if len(campaigns) == 0 {
		out = append(out, Invariant{Name: "exactly one message per eligible recipient", Detail: "no campaign was created"})
	}
	statuses := map[int64]string{}
	for _, id := range campaigns {
		var st string
		if err := r.b.Pool.QueryRow(ctx, `SELECT status FROM campaigns WHERE id = $1`, id).Scan(&st); err != nil {
			st = "unreadable: " + err.Error()
		}
		statuses[id] = st
	}
	out = append(out, CheckCampaigns(statuses))
	out = append(out, CheckClaims(unsub, claims))
	out = append(out, settle(func() Invariant {
		rows, err := r.b.Pool.Query(ctx, `SELECT state::text, count(*) FROM river_job GROUP BY state`)
		if err != nil {
			return unreadable("no job lost or stuck", err)
		}
		byState := map[string]int{}
		for rows.Next() {
			var s string
			var n int
			if err := rows.Scan(&s, &n); err != nil {
				rows.Close()
				return unreadable("no job lost or stuck", err)
			}
			byState[s] = n
		}
		rows.Close()
		return CheckJobs(byState)
	}))
	r.say("checked after %s", time.Since(r.start).Round(time.Second))
	return out
}
