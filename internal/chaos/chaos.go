package chaos

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/cluster"
	"github.com/tailor-email/tailor/localstack"
)

// Config says how big a run is and which faults it injects. Zero values mean the full
// matrix's defaults (Full); Short gives the make-test version.
type Config struct {
	// Binary is the tailor executable the cluster runs. Required.
	Binary string
	// StackDir is the running local stack (tailor dev up). Required. The run makes its own
	// database and resource prefix on it and drops the database at the end.
	StackDir string
	// Seed drives every random choice; 0 picks one (printed in the report).
	Seed uint64
	// Customers, Events, CRMUpdates and Unsubscribes are the workload's volumes.
	Customers, Events, CRMUpdates, Unsubscribes int
	// Window is how long the workload and the faults last. Settle bounds each wait for the
	// system to catch up afterwards.
	Window, Settle time.Duration
	// StackFaults adds the faults that hit the stack itself (a Postgres restart, emulator
	// outages): only on a stack nobody else uses (not make test's shared one).
	StackFaults bool
	// Kills is how many times each role is SIGKILLed. Default 1.
	Kills int
	// Keep leaves the database and the logs in place.
	Keep bool
	// Out receives progress lines; nil discards them.
	Out io.Writer
}

// Full is the matrix `make chaos` runs.
func Full() Config {
	return Config{Customers: 600, Events: 3000, CRMUpdates: 400, Unsubscribes: 30, Window: 100 * time.Second,
		Settle: 3 * time.Minute, StackFaults: true, Kills: 2}
}

// Short is the version make test runs: a few faults, small volumes, no fault of the shared
// stack itself.
func Short() Config {
	return Config{Customers: 150, Events: 400, CRMUpdates: 80, Unsubscribes: 8, Window: 25 * time.Second,
		Settle: 75 * time.Second, Kills: 1}
}

func (c Config) withDefaults() Config {
	f := Full()
	c.Customers = cmp.Or(c.Customers, f.Customers)
	c.Events = cmp.Or(c.Events, f.Events)
	c.CRMUpdates = cmp.Or(c.CRMUpdates, f.CRMUpdates)
	c.Unsubscribes = cmp.Or(c.Unsubscribes, f.Unsubscribes)
	c.Window = cmp.Or(c.Window, f.Window)
	c.Settle = cmp.Or(c.Settle, f.Settle)
	c.Kills = cmp.Or(c.Kills, 1)
	if c.Seed == 0 {
		c.Seed = mrand.Uint64()%1_000_000 + 1
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Binary == "" || c.StackDir == "":
		return errors.New("chaos: Config.Binary and Config.StackDir are required")
	case c.Unsubscribes > c.Customers:
		return fmt.Errorf("chaos: %d unsubscribes of %d customers", c.Unsubscribes, c.Customers)
	}
	return nil
}

// Fault is one injected fault.
type Fault struct {
	Name   string
	At     time.Duration // since the workload started
	Detail string
	Err    error
}

// Report is a run's faults and verdicts.
type Report struct {
	Seed       uint64
	Faults     []Fault
	Invariants []Invariant
	Elapsed    time.Duration
	Logs       string
}

// OK reports whether every fault was injected and every invariant held.
func (r *Report) OK() bool {
	for _, f := range r.Faults {
		if f.Err != nil {
			return false
		}
	}
	for _, inv := range r.Invariants {
		if !inv.Held {
			return false
		}
	}
	return len(r.Invariants) > 0
}

// Print writes the faults and invariants tables.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "chaos seed %d (rerun with --seed %d), %s, logs in %s\n\n", r.Seed, r.Seed, r.Elapsed.Round(time.Second), r.Logs)
	fmt.Fprintln(tw, "FAULT\tAT\tRESULT")
	for _, f := range r.Faults {
		res := f.Detail
		if f.Err != nil {
			res = "NOT INJECTED: " + f.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t+%.1fs\t%s\n", f.Name, f.At.Seconds(), res)
	}
	fmt.Fprintln(tw, "\nINVARIANT\tHELD\tDETAIL")
	for _, inv := range r.Invariants {
		held := "yes"
		if !inv.Held {
			held = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", inv.Name, held, inv.Detail)
	}
	_ = tw.Flush()
}

// run is one chaos run's state.
type run struct {
	cfg     Config
	rngMu   sync.Mutex
	rngs    map[string]*mrand.Rand // one stream per stage, so one stage's draws never shift another's
	st      *localstack.State
	b       *backends.Backends
	global  []string
	cl      *cluster.Cluster
	content *contentServer
	keys    cluster.Keys
	start   time.Time
	logDir  string

	mu        sync.Mutex
	faults    []Fault
	sent      map[string]int       // events accepted, by customer
	unsubAt   map[string]time.Time // when each unsubscribe was answered
	claims    []Claim
	campaigns []int64
	restarts  map[string]int  // unexpected exits restarted, by process
	killed    map[string]bool // processes a fault is killing and will restart
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.cfg.Out, "chaos %6.1fs: "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
}

// intn draws from the stage's own random stream (seeded from the run's seed and the stage's
// name): with the same seed, each stage makes the same choices whatever the timing.
func (r *run) intn(stage string, n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	rng, ok := r.rngs[stage]
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(stage))
		rng = mrand.New(mrand.NewPCG(r.cfg.Seed, h.Sum64()))
		r.rngs[stage] = rng
	}
	return rng.IntN(n)
}

func (r *run) addFault(f Fault) {
	r.mu.Lock()
	r.faults = append(r.faults, f)
	r.mu.Unlock()
	if f.Err != nil {
		r.say("fault %s: NOT INJECTED: %v", f.Name, f.Err)
	} else {
		r.say("fault %s: %s", f.Name, f.Detail)
	}
}

// Run runs the matrix and returns its report. An error means the harness itself could not
// run (the stack is missing, setup failed); violations are in the report, not the error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	st, err := localstack.Load(cfg.StackDir)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, rngs: map[string]*mrand.Rand{}, st: st, start: time.Now(),
		sent: map[string]int{}, unsubAt: map[string]time.Time{}, restarts: map[string]int{}, killed: map[string]bool{}}
	rep := &Report{Seed: cfg.Seed}
	defer func() { rep.Elapsed = time.Since(r.start) }()

	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := fmt.Sprintf("chaos_%d_%s", cfg.Seed, hex.EncodeToString(suffix))
	r.logDir = filepath.Join(st.Dir, name)
	rep.Logs = r.logDir
	dbURL := st.DatabaseURL(name)
	if err := createDatabase(ctx, st, name); err != nil {
		return nil, err
	}
	if !cfg.Keep {
		defer dropDatabase(context.WithoutCancel(ctx), st, name)
	}
	r.global = []string{"--dir", st.Dir, "--database-url", dbURL, "--prefix", name + "_"}
	if out, err := r.cli(ctx, "migrate"); err != nil {
		return nil, fmt.Errorf("chaos: migrate: %w: %s", err, out)
	}
	r.b, err = backends.Open(ctx, backends.Config{DatabaseURL: dbURL, StackDir: st.Dir, Prefix: name + "_"})
	if err != nil {
		return nil, err
	}
	defer r.b.Close()
	r.say("seed %d: database %s, %d customers, %d events, %d CRM updates, %d unsubscribes over %s", cfg.Seed, name,
		cfg.Customers, cfg.Events, cfg.CRMUpdates, cfg.Unsubscribes, cfg.Window)

	if r.content, err = startContent(); err != nil {
		return nil, err
	}
	defer r.content.Close()
	ids, err := r.seedCustomers(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.startCluster(ctx); err != nil {
		return nil, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = r.cl.Stop(stopCtx)
	}()
	superviseCtx, stopSupervise := context.WithCancel(ctx)
	supervised := r.supervise(superviseCtx)
	defer func() { stopSupervise(); <-supervised }()

	if err := r.waitReady(ctx, ids); err != nil {
		return nil, err
	}
	tpl := r.logDir
	r.start = time.Now() // fault times count from the workload's start
	if err := r.workload(ctx, ids, tpl); err != nil {
		return nil, err
	}
	rep.Invariants = r.check(ctx, ids)
	stopSupervise()
	<-supervised
	r.mu.Lock()
	var names []string
	for n := range r.restarts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r.faults = append(r.faults, Fault{Name: "exit of " + n, At: 0, Detail: fmt.Sprintf("died %d time(s) by itself; restarted (as a supervisor would)", r.restarts[n])})
	}
	rep.Faults = r.faults
	r.mu.Unlock()
	return rep, nil
}

// cli runs one tailor command against the run's database and prefix.
func (r *run) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.cfg.Binary, append(append([]string{}, r.global...), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func createDatabase(ctx context.Context, st *localstack.State, name string) error {
	conn, err := pgx.Connect(ctx, st.DatabaseURL("postgres"))
	if err != nil {
		return fmt.Errorf("chaos: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("chaos: create database: %w", err)
	}
	return nil
}

func dropDatabase(ctx context.Context, st *localstack.State, name string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, st.DatabaseURL("postgres"))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

func (r *run) startCluster(ctx context.Context) error {
	var err error
	if r.keys, err = cluster.NewKeys(); err != nil {
		return err
	}
	port, err := cluster.FreePort()
	if err != nil {
		return err
	}
	publicURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	roleArgs := r.keys.RoleArgs(publicURL)
	roleArgs["consume"] = append(roleArgs["consume"], "--lease-duration", "4s", "--stop-timeout", "5s")
	roleArgs["work"] = append(roleArgs["work"], "--batch-size", "10", "--stop-timeout", "5s")
	r.cl, err = cluster.Start(ctx, cluster.Config{
		Binary: r.cfg.Binary, GlobalArgs: r.global, RoleArgs: roleArgs,
		// The relay would send and ack what the never-acking sender should see; it is not in
		// this matrix (yet).
		Counts: map[string]int{"relay": 0},
		Ports:  map[string]int{"serve-0": port}, LogDir: r.logDir, StopTimeout: 15 * time.Second,
		Env:  []string{"TAILOR_CONTENT_URL=" + r.content.URL},
		Note: func(f string, a ...any) { r.say(f, a...) },
	})
	if err != nil {
		return err
	}
	for _, p := range r.cl.Procs() {
		r.say("started %s pid %d %s log %s", p.Name(), p.PID, p.Addr(), p.Log)
	}
	return nil
}

// supervise restarts a process that died by itself (not one a fault killed, which the fault
// restarts), as systemd or Kubernetes would, and counts it.
func (r *run) supervise(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, p := range r.cl.Procs() {
				if p.Running() || r.killing(p.Name()) {
					continue
				}
				r.say("%s (pid %d) exited by itself: %v; restarting (see %s)", p.Name(), p.PID, p.Err(), p.Log)
				if _, err := r.cl.Restart(p.Name()); err != nil {
					r.say("restart %s: %v", p.Name(), err)
					continue
				}
				r.mu.Lock()
				r.restarts[p.Name()]++
				r.mu.Unlock()
			}
		}
	}()
	return done
}

func (r *run) killing(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killed[name]
}

func (r *run) setKilling(name string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed[name] = on
}

var campaignCreated = regexp.MustCompile(`campaign (\d+) created`)

// writeTemplate writes a campaign's template: one content source on the harness's content API
// with a fallback and no cache, and the one-click unsubscribe link. Each campaign has its own
// template name, so each has its own circuit breaker (one fault's open breaker would keep the
// next campaign from calling the API at all).
func writeTemplate(dir, name string) (string, error) {
	tpl := filepath.Join(dir, name)
	if err := os.MkdirAll(tpl, 0o755); err != nil {
		return "", err
	}
	files := map[string]string{
		"template.yaml": `name: ` + name + `
version: 1
defaults:
  first_name: there
content:
  recs:
    url: "${TAILOR_CONTENT_URL}/recommendations?customer={{ customer.customer_id | url_encode }}"
    timeout: 2s
    cache_ttl: 0s
    fallback:
      items:
        - {name: "Our bestsellers", url: "https://example.com/best"}
`,
		"subject": "Hi {{ customer.first_name }}",
		"html":    `<p>Hi {{ customer.first_name }}</p><ul>{% for item in content.recs.items limit: 3 %}<li><a href="{{ item.url }}">{{ item.name }}</a></li>{% endfor %}</ul><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>`,
		"text":    "Hi {{ customer.first_name }}\n{% for item in content.recs.items limit: 3 %}- {{ item.name }}\n{% endfor %}\nUnsubscribe: {{ unsubscribe_url }}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(tpl, name), []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	return tpl, nil
}
