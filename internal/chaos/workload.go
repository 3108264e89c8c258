package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/ctxtime"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/preferences"
)

var countries = []string{"FR", "DE", "ES", "US", "IT"}

func (r *run) seedCustomers(ctx context.Context) ([]string, error) {
	ids := make([]string, r.cfg.Customers)
	for i := range ids {
		ids[i] = fmt.Sprintf("cx-%05d", i)
		if _, err := r.b.Pool.Exec(ctx, `INSERT INTO customers (id, email, first_name, last_name, locale, country)
			VALUES ($1, $2, 'F0', 'L', 'en', $3)`, ids[i], ids[i]+"@example.com", countries[i%len(countries)]); err != nil {
			return nil, fmt.Errorf("chaos: seed customers: %w", err)
		}
	}
	return ids, nil
}

// waitReady waits for both servers to answer and for CDC to have backfilled every customer.
func (r *run) waitReady(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Settle)
	defer cancel()
	for _, p := range r.cl.Of("serve") {
		if err := poll(ctx, func() (bool, error) {
			res, err := http.Get("http://" + p.Addr() + "/readyz")
			if err != nil {
				return false, nil
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK, nil
		}); err != nil {
			return fmt.Errorf("chaos: %s not ready (see %s): %w", p.Name(), p.Log, err)
		}
	}
	store := profile.NewStore(r.b.DynamoDB, r.b.Names.Profiles)
	err := poll(ctx, func() (bool, error) {
		got, err := r.profiles(ctx, store, ids)
		if err != nil {
			return false, nil
		}
		for _, id := range ids {
			if p := got[id]; p == nil || p.CRM.Email == "" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("chaos: CDC did not backfill the %d customers: %w", len(ids), err)
	}
	r.say("cluster ready: %d profiles backfilled by CDC", len(ids))
	return nil
}

func (r *run) profiles(ctx context.Context, store *profile.Store, ids []string) (map[string]*profile.Profile, error) {
	out := map[string]*profile.Profile{}
	for i := 0; i < len(ids); i += 100 {
		got, err := store.BatchGet(ctx, ids[i:min(i+100, len(ids))])
		if err != nil {
			return nil, err
		}
		for k, v := range got {
			out[k] = v
		}
	}
	return out, nil
}

// poll calls cond with backoff until it is true, returns an error, or ctx ends.
func poll(ctx context.Context, cond func() (bool, error)) error {
	delay := 50 * time.Millisecond
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := ctxtime.Sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(delay*2, time.Second)
	}
}

// retry calls fn until it succeeds or ctx ends; it returns the last error then.
func retry(ctx context.Context, fn func() error) error {
	delay := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		if err := ctxtime.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// at sleeps until offset after the workload's start.
func (r *run) at(ctx context.Context, offset time.Duration) error {
	return ctxtime.Sleep(ctx, time.Until(r.start.Add(offset)))
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// serveAddr picks a serve process at random (from the stage's stream).
func (r *run) serveAddr(stage string) string {
	s := r.cl.Of("serve")
	return s[r.intn(stage, len(s))].Addr()
}

// workload runs the events, CRM changes, unsubscribes, the campaign, the never-acking sender
// and the faults for the window, and returns when all of them are done.
func (r *run) workload(ctx context.Context, ids []string, tpl string) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	// Each stage must finish within the window plus the settle time, whatever the faults do.
	stageCtx, cancel := context.WithTimeout(ctx, r.cfg.Window+r.cfg.Settle)
	defer cancel()
	goStage := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(stageCtx); err != nil {
				errs <- fmt.Errorf("chaos: %s: %w", name, err)
			}
		}()
	}
	campaignReady := make(chan int64, 1)
	senderDone, faultsDone := make(chan struct{}), make(chan struct{})
	goStage("events", func(ctx context.Context) error { return r.sendEvents(ctx, ids) })
	goStage("crm", func(ctx context.Context) error { return r.updateCRM(ctx, ids) })
	goStage("campaign", func(ctx context.Context) error {
		if err := r.at(ctx, r.cfg.Window/5); err != nil {
			return err
		}
		id, err := r.createCampaign(ctx, tpl)
		if err != nil {
			return err
		}
		campaignReady <- id
		close(campaignReady)
		return nil
	})
	var campaignID int64
	select {
	case campaignID = <-campaignReady:
	case err := <-errs:
		cancel()
		wg.Wait()
		return err
	}
	goStage("unsubscribes", func(ctx context.Context) error { return r.unsubscribe(ctx, ids, campaignID) })
	goStage("sender", func(ctx context.Context) error { return r.neverAck(ctx, senderDone) })
	goStage("faults", func(ctx context.Context) error { defer close(faultsDone); return r.injectFaults(ctx, tpl) })
	// The sender claims until the window is over and every campaign is final.
	goStage("campaign wait", func(ctx context.Context) error {
		defer close(senderDone)
		if err := r.at(ctx, r.cfg.Window); err != nil {
			return err
		}
		select {
		case <-faultsDone:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
		ids := append([]int64(nil), r.campaigns...)
		r.mu.Unlock()
		for _, id := range ids {
			// A campaign that does not finish is a verdict (CheckCampaigns), not a harness error.
			if err := r.waitCampaign(ctx, id); err != nil {
				r.say("%v", err)
			}
		}
		return nil
	})
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// sendEvents posts the events in batches of 10 to a random serve process, spread over the
// window; a batch that fails (a killed server, an emulator outage) is sent again, same event
// ids, until it is accepted. Only then does it count in the ground truth.
func (r *run) sendEvents(ctx context.Context, ids []string) error {
	const batch = 10
	batches := (r.cfg.Events + batch - 1) / batch
	for b := range batches {
		if err := r.at(ctx, r.cfg.Window*time.Duration(b)/time.Duration(batches)); err != nil {
			return err
		}
		var evs []events.Event
		for i := b * batch; i < min((b+1)*batch, r.cfg.Events); i++ {
			id := ids[r.intn("events", len(ids))]
			evs = append(evs, events.Event{EventID: fmt.Sprintf("chaos-%d-%d", r.cfg.Seed, i), CustomerID: id, Type: events.TypeProductView,
				Timestamp: time.Now().UTC(), Properties: events.Properties{ProductID: "p-" + strconv.Itoa(i%7), Category: "books"}})
		}
		body, err := json.Marshal(evs)
		if err != nil {
			return err
		}
		sendCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = retry(sendCtx, func() error { return r.postEvents(sendCtx, body, len(evs)) })
		cancel()
		if err != nil {
			return fmt.Errorf("batch %d not accepted within 90s: %w", b, err)
		}
		r.mu.Lock()
		for _, e := range evs {
			r.sent[e.CustomerID]++
		}
		r.mu.Unlock()
	}
	r.say("events: %d sent", r.cfg.Events)
	return nil
}

func (r *run) postEvents(ctx context.Context, body []byte, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.serveAddr("events-serve")+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.keys.APIKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var out struct {
		Accepted int    `json:"accepted"`
		Error    string `json:"error"`
	}
	b, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(b, &out)
	if res.StatusCode != http.StatusOK || out.Accepted != n {
		return fmt.Errorf("POST /v1/events: %s, %d of %d accepted: %s", res.Status, out.Accepted, n, strings.TrimSpace(string(b)))
	}
	return nil
}

// updateCRM changes customers rows (first name, country) spread over the window; the table
// itself is the ground truth.
func (r *run) updateCRM(ctx context.Context, ids []string) error {
	for i := range r.cfg.CRMUpdates {
		if err := r.at(ctx, r.cfg.Window*time.Duration(i)/time.Duration(r.cfg.CRMUpdates)); err != nil {
			return err
		}
		id, first, country := ids[r.intn("crm", len(ids))], fmt.Sprintf("F%d", i+1), countries[r.intn("crm", len(countries))]
		upCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := retry(upCtx, func() error {
			_, err := r.b.Pool.Exec(upCtx, `UPDATE customers SET first_name = $2, country = $3, updated_at = now() WHERE id = $1`, id, first, country)
			return err
		})
		cancel()
		if err != nil {
			return fmt.Errorf("update %s: %w", id, err)
		}
	}
	r.say("crm: %d updates", r.cfg.CRMUpdates)
	return nil
}

// createCampaign creates a campaign to everyone that is claimable at once, with a template of
// its own in dir.
func (r *run) createCampaign(ctx context.Context, dir string) (int64, error) {
	r.mu.Lock()
	name := fmt.Sprintf("chaos-%d", len(r.campaigns)+1)
	r.mu.Unlock()
	tpl, err := writeTemplate(dir, name)
	if err != nil {
		return 0, err
	}
	var id int64
	err = retry(ctx, func() error {
		out, err := r.cli(ctx, "campaign", "create", "--name", name, "--template", tpl, "--segment", "true", "--send-at", "now")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		m := campaignCreated.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("no campaign id in %q", out)
		}
		id, err = strconv.ParseInt(m[1], 10, 64)
		return err
	})
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.campaigns = append(r.campaigns, id)
	r.mu.Unlock()
	r.say("campaign %d created", id)
	return id, nil
}

func (r *run) waitCampaign(ctx context.Context, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Settle)
	defer cancel()
	var status string
	err := poll(ctx, func() (bool, error) {
		if err := r.b.Pool.QueryRow(ctx, `SELECT status FROM campaigns WHERE id = $1`, id).Scan(&status); err != nil {
			return false, nil // Postgres may be restarting
		}
		return status == "rendered" || status == "failed" || status == "cancelled", nil
	})
	if err != nil {
		return fmt.Errorf("campaign %d still %s after %s: %w", id, status, r.cfg.Settle, err)
	}
	r.say("campaign %d %s", id, status)
	return nil
}

// unsubscribe unsubscribes distinct random recipients with a one-click POST to a random serve
// process, spread over the second half of the window; the answer's time is the ground truth.
func (r *run) unsubscribe(ctx context.Context, ids []string, campaignID int64) error {
	keys, err := preferences.ParseTokenKey(r.keys.TokenKey)
	if err != nil {
		return err
	}
	links, err := app.PreferenceLinks("http://unused", []preferences.TokenKey{keys}, 0)
	if err != nil {
		return err
	}
	chosen := map[string]bool{}
	for i := range r.cfg.Unsubscribes {
		if err := r.at(ctx, r.cfg.Window/4+r.cfg.Window*time.Duration(i)/time.Duration(2*r.cfg.Unsubscribes)); err != nil {
			return err
		}
		id := ids[r.intn("unsubscribes", len(ids))]
		for chosen[id] {
			id = ids[r.intn("unsubscribes", len(ids))]
		}
		chosen[id] = true
		link, _ := links(campaignID, "", id)
		u, err := url.Parse(link)
		if err != nil {
			return err
		}
		upCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = retry(upCtx, func() error {
			req, err := http.NewRequestWithContext(upCtx, http.MethodPost, "http://"+r.serveAddr("unsubscribes-serve")+u.Path, strings.NewReader("List-Unsubscribe=One-Click"))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res, err := httpClient.Do(req)
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode/100 != 2 {
				return fmt.Errorf("POST one-click unsubscribe: %s", res.Status)
			}
			return nil
		})
		cancel()
		if err != nil {
			return fmt.Errorf("unsubscribe %s: %w", id, err)
		}
		r.mu.Lock()
		r.unsubAt[id] = time.Now()
		r.mu.Unlock()
	}
	r.say("unsubscribes: %d", r.cfg.Unsubscribes)
	return nil
}

// neverAck is a sender that claims the run's messages (every campaign) with a short lease and never acks
// them, so every message is handed out again and again: each claim is recorded with the time
// it started.
func (r *run) neverAck(ctx context.Context, done <-chan struct{}) error {
	store, err := delivery.NewStore(delivery.StoreConfig{DB: r.b.Pool})
	if err != nil {
		return err
	}
	claims, failed := 0, 0
	for {
		select {
		case <-done:
			r.say("sender: %d messages claimed and never acked (%d claims failed)", claims, failed)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		started := time.Now()
		msgs, err := store.Claim(ctx, delivery.ClaimRequest{Limit: 100, Lease: 2 * time.Second})
		if err != nil {
			failed++ // Postgres restarting, a terminated session: claim again
			continue
		}
		r.mu.Lock()
		for _, m := range msgs {
			r.claims = append(r.claims, Claim{CustomerID: m.CustomerID, Started: started})
		}
		r.mu.Unlock()
		claims += len(msgs)
	}
}
