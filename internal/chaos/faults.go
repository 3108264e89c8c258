package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tailor-email/tailor/internal/ctxtime"
	"github.com/tailor-email/tailor/localstack"
)

// plannedFault is a fault and when in the window it starts.
type plannedFault struct {
	name string
	at   time.Duration
	run  func(ctx context.Context) (string, error)
}

// plan picks the faults and their random start times (between a tenth and nine tenths of the
// window). Faults run one after the other, so a late one may start after its time.
func (r *run) plan(tpl string) []plannedFault {
	var out []plannedFault
	add := func(name string, fn func(context.Context) (string, error)) {
		lo := r.cfg.Window / 10
		out = append(out, plannedFault{name: name, at: lo + time.Duration(r.intn("faults", int(r.cfg.Window*8/10/time.Millisecond)))*time.Millisecond, run: fn})
	}
	for range r.cfg.Kills {
		for _, role := range []string{"work", "consume", "cdc", "serve"} {
			add("SIGKILL "+role, func(ctx context.Context) (string, error) { return r.killRole(ctx, role) })
		}
	}
	add("content API outage", func(ctx context.Context) (string, error) {
		return r.contentFault(ctx, tpl, contentDown, "503 to every call")
	})
	add("content API slowness", func(ctx context.Context) (string, error) {
		return r.contentFault(ctx, tpl, contentSlow, fmt.Sprintf("%s per answer (template timeout 2s)", r.content.delay))
	})
	add("pg_terminate_backend of workers", r.terminateWorkers)
	if r.cfg.StackFaults {
		add("Postgres restart", r.restartPostgres)
		add("kinesalite outage", func(ctx context.Context) (string, error) { return r.pauseEmulator(ctx, "kinesis") })
		add("dynalite outage", func(ctx context.Context) (string, error) { return r.pauseEmulator(ctx, "dynamodb") })
		add("pg_terminate_backend of workers", r.terminateWorkers)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

func (r *run) injectFaults(ctx context.Context, tpl string) error {
	for _, f := range r.plan(tpl) {
		if err := r.at(ctx, f.at); err != nil {
			return err
		}
		at := time.Since(r.start)
		fctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		detail, err := f.run(fctx)
		cancel()
		r.addFault(Fault{Name: f.name, At: at, Detail: detail, Err: err})
	}
	return nil
}

// killRole SIGKILLs a random live process of the role, waits a random 0.2-2 s and starts it
// again on the same port.
func (r *run) killRole(ctx context.Context, role string) (string, error) {
	procs := r.cl.Of(role)
	if len(procs) == 0 {
		return "", fmt.Errorf("no %s process", role)
	}
	p := procs[r.intn("faults", len(procs))]
	what := ""
	if role == "cdc" {
		// Kill the process that streams (its replication session carries its PGAPPNAME), so
		// the standby must take over; a random one when none streams right now.
		var active string
		_ = r.b.Pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_replication WHERE application_name LIKE 'tailor-cdc-%' LIMIT 1`).Scan(&active)
		for _, q := range procs {
			if "tailor-"+q.Name() == active {
				p, what = q, " (the streaming one)"
			}
		}
	}
	r.setKilling(p.Name(), true)
	defer r.setKilling(p.Name(), false)
	if !p.Running() {
		return "", fmt.Errorf("%s had already exited (%v)", p.Name(), p.Err())
	}
	alive := time.Since(p.Start)
	if err := r.cl.Kill(ctx, p); err != nil {
		return "", err
	}
	down := 200*time.Millisecond + time.Duration(r.intn("faults", 1800))*time.Millisecond
	if err := ctxtime.Sleep(ctx, down); err != nil {
		return "", err
	}
	np, err := r.cl.Restart(p.Name())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s%s pid %d killed after %s up; restarted %s later as pid %d", p.Name(), what, p.PID, alive.Round(100*time.Millisecond), down.Round(100*time.Millisecond), np.PID), nil
}

// contentFault puts the content API in mode, creates a campaign so that renders meet the
// fault, and holds the mode until that campaign is final (30 s at most: a campaign's start
// can wait for River's leader, e.g. after a SIGKILL of the work process that led).
func (r *run) contentFault(ctx context.Context, tpl string, mode int32, what string) (string, error) {
	before := r.content.hits.Load()
	start := time.Now()
	r.content.mode.Store(mode)
	defer r.content.mode.Store(contentOK)
	id, err := r.createCampaign(ctx, tpl)
	if err != nil {
		return "", err
	}
	hold, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = poll(hold, func() (bool, error) {
		var status string
		if err := r.b.Pool.QueryRow(hold, `SELECT status FROM campaigns WHERE id = $1`, id).Scan(&status); err != nil {
			return false, nil
		}
		return status == "rendered" || status == "failed" || status == "cancelled", nil
	})
	calls := r.content.hits.Load() - before
	if calls == 0 {
		return "", fmt.Errorf("%s for %s, but campaign %d made no content call meanwhile", what, time.Since(start).Round(100*time.Millisecond), id)
	}
	return fmt.Sprintf("%s for %s during campaign %d (%d calls meanwhile)", what, time.Since(start).Round(100*time.Millisecond), id, calls), nil
}

// terminateWorkers ends every Postgres session of the work processes (PGAPPNAME tailor-work-N).
func (r *run) terminateWorkers(ctx context.Context) (string, error) {
	var n int
	err := retry(ctx, func() error {
		return r.b.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'tailor-work-%') t`).Scan(&n)
	})
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", fmt.Errorf("no work sessions found (application_name tailor-work-*)")
	}
	return fmt.Sprintf("%d work sessions terminated", n), nil
}

func (r *run) restartPostgres(ctx context.Context) (string, error) {
	start := time.Now()
	st, err := localstack.RestartPostgres(ctx, r.st.Dir)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("fast shutdown and start in %s (pid %d)", time.Since(start).Round(100*time.Millisecond), st.Postgres.PID), nil
}

func (r *run) pauseEmulator(ctx context.Context, name string) (string, error) {
	d := r.cfg.Window / 12
	if err := localstack.PauseEmulator(ctx, r.st.Dir, name, d); err != nil {
		return "", err
	}
	return fmt.Sprintf("SIGSTOP for %s, then SIGCONT (in-memory data kept)", d.Round(100*time.Millisecond)), nil
}
