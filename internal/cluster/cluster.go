package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is one kind of process of the cluster.
type Role struct {
	// Name is the role's name and the tailor subcommand that runs it.
	Name string
	// Count is how many processes of the role a default cluster runs.
	Count int
	// PortFlag, when set, gives each process a free loopback port through this flag
	// ("--addr" for serve, "--metrics-addr" for the others that have one).
	PortFlag string
	// Args are extra arguments after the subcommand.
	Args []string
	// Optional roles are skipped with a note when the binary has no such command (relay is
	// being written elsewhere).
	Optional bool
}

// Roles is the cluster's role table, in start order: CDC first (one streams, the other waits
// on the slot's advisory lock as a standby), then the consumers, workers, servers and relay.
var Roles = []Role{
	{Name: "cdc", Count: 2, PortFlag: "--metrics-addr"},
	{Name: "consume", Count: 2, PortFlag: "--metrics-addr"},
	{Name: "work", Count: 2},
	{Name: "serve", Count: 2, PortFlag: "--addr"},
	{Name: "relay", Count: 1, Optional: true},
}

// StopTimeoutDefault bounds a graceful stop (SIGTERM) before SIGKILL.
const StopTimeoutDefault = 20 * time.Second

// ParseCounts reads "consume=2,work=3,relay=0" into counts by role name. Roles left out keep
// their default count; an unknown role is an error naming the known ones.
func ParseCounts(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, r := range Roles {
		out[r.Name] = r.Count
	}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("roles %q: want ROLE=N[,ROLE=N...], e.g. consume=2,work=3", part)
		}
		if _, known := out[name]; !known {
			return nil, fmt.Errorf("roles: unknown role %q (known: %s)", name, strings.Join(RoleNames(), ", "))
		}
		count, err := strconv.Atoi(n)
		if err != nil || count < 0 || count > 16 {
			return nil, fmt.Errorf("roles: %s=%s: want a count from 0 to 16", name, n)
		}
		out[name] = count
	}
	return out, nil
}

// RoleNames lists the role table's names in start order.
func RoleNames() []string {
	var names []string
	for _, r := range Roles {
		names = append(names, r.Name)
	}
	return names
}

// Config says what to start. Zero values mean defaults.
type Config struct {
	// Binary is the tailor executable. Required.
	Binary string
	// GlobalArgs go before the subcommand of every process (--dir, --database-url, --prefix).
	GlobalArgs []string
	// Counts is processes per role name; a role missing from it runs its default Count.
	Counts map[string]int
	// RoleArgs are extra arguments per role name, after the role's own Args.
	RoleArgs map[string][]string
	// Ports fixes the port of a process by name ("serve-0": 8080); the others get free ones.
	Ports map[string]int
	// Env is added to every process's environment (after os.Environ()).
	Env []string
	// LogDir holds one log file per process, <role>-<index>.log. Required.
	LogDir string
	// StopTimeout bounds the graceful stop. Default StopTimeoutDefault.
	StopTimeout time.Duration
	// Note receives messages such as a skipped role; nil discards them.
	Note func(format string, args ...any)
}

// Proc is one process of the cluster. Its fields do not change; a restart makes a new Proc.
type Proc struct {
	Role  string
	Index int
	PID   int
	Port  int // 0 when the role has no port
	Log   string
	Start time.Time

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Name is "role-index", e.g. "work-1".
func (p *Proc) Name() string { return p.Role + "-" + strconv.Itoa(p.Index) }

// Addr is the process's loopback address, or "" without a port.
func (p *Proc) Addr() string {
	if p.Port == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(p.Port)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error; valid after Done is closed.
func (p *Proc) Err() error { return p.err }

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Cluster is a started set of processes. Its methods are safe for concurrent use.
type Cluster struct {
	cfg     Config
	mu      sync.Mutex
	procs   map[string]*Proc // by Name
	skipped []string
}

// Start starts every process the config asks for and returns at once (it does not wait for
// readiness; callers poll what they need). On error, what was started is stopped.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Binary == "" || cfg.LogDir == "" {
		return nil, errors.New("cluster: Config.Binary and Config.LogDir are required")
	}
	cfg.StopTimeout = cmp.Or(cfg.StopTimeout, StopTimeoutDefault)
	if cfg.Note == nil {
		cfg.Note = func(string, ...any) {}
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{cfg: cfg, procs: map[string]*Proc{}}
	for _, r := range Roles {
		n := r.Count
		if v, ok := cfg.Counts[r.Name]; ok {
			n = v
		}
		if n == 0 {
			continue
		}
		if r.Optional && !c.hasCommand(ctx, r.Name) {
			cfg.Note("%s: this tailor binary has no %q command: skipping the role", r.Name, r.Name)
			c.skipped = append(c.skipped, r.Name)
			continue
		}
		for i := range n {
			if _, err := c.start(r, i, cfg.Ports[fmt.Sprintf("%s-%d", r.Name, i)]); err != nil {
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.StopTimeout)
				defer cancel()
				_ = c.Stop(stopCtx)
				return nil, err
			}
		}
	}
	return c, nil
}

// hasCommand reports whether `tailor NAME --help` succeeds.
func (c *Cluster) hasCommand(ctx context.Context, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, c.cfg.Binary, name, "--help").Run() == nil
}

// Skipped names the optional roles the binary does not have.
func (c *Cluster) Skipped() []string { return slices.Clone(c.skipped) }

func role(name string) (Role, bool) {
	for _, r := range Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// start launches process i of role r (on port, or a free one when 0 and the role has ports).
func (c *Cluster) start(r Role, i, port int) (*Proc, error) {
	p := &Proc{Role: r.Name, Index: i, Log: filepath.Join(c.cfg.LogDir, fmt.Sprintf("%s-%d.log", r.Name, i)), done: make(chan struct{})}
	args := slices.Clone(c.cfg.GlobalArgs)
	args = append(args, r.Name)
	args = append(args, r.Args...)
	args = append(args, c.cfg.RoleArgs[r.Name]...)
	if r.PortFlag != "" {
		if port == 0 {
			var err error
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		p.Port = port
		args = append(args, r.PortFlag, p.Addr())
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: log of %s: %w", p.Name(), err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "---- %s: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), c.cfg.Binary, strings.Join(redact(args), " "))
	cmd := exec.Command(c.cfg.Binary, args...)
	// PGAPPNAME names the process's Postgres sessions (pg_stat_activity.application_name), so
	// an operator, or the chaos harness, can tell whose backend is whose.
	cmd.Env = append(append(os.Environ(), c.cfg.Env...), "PGAPPNAME=tailor-"+p.Name())
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (a terminal's Ctrl-C reaches the supervisor, which stops the
	// processes in order), and SIGKILL if the supervisor dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", p.Name(), err)
	}
	p.cmd, p.PID, p.Start = cmd, cmd.Process.Pid, time.Now()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[p.Name()] = p
	c.mu.Unlock()
	return p, nil
}

// Procs returns the current processes (live or exited) sorted by role table order, then index.
func (c *Cluster) Procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Proc, 0, len(c.procs))
	for _, p := range c.procs {
		out = append(out, p)
	}
	order := map[string]int{}
	for i, r := range Roles {
		order[r.Name] = i
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return order[out[i].Role] < order[out[j].Role]
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// Of returns the current processes of one role.
func (c *Cluster) Of(roleName string) []*Proc {
	var out []*Proc
	for _, p := range c.Procs() {
		if p.Role == roleName {
			out = append(out, p)
		}
	}
	return out
}

// Get returns the current process named "role-index", or nil.
func (c *Cluster) Get(name string) *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// Kill sends SIGKILL to the process (and its group) and waits until it is reaped.
func (c *Cluster) Kill(ctx context.Context, p *Proc) error {
	if p.Running() {
		_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: kill %s (pid %d): %w", p.Name(), p.PID, ctx.Err())
	}
}

// Restart starts the named process again (same role, index and port) once the old one has
// exited, and returns the new one. A process still running is an error: Kill it first.
func (c *Cluster) Restart(name string) (*Proc, error) {
	old := c.Get(name)
	if old == nil {
		return nil, fmt.Errorf("cluster: no process %q", name)
	}
	if old.Running() {
		return nil, fmt.Errorf("cluster: %s (pid %d) still runs: kill it before a restart", name, old.PID)
	}
	r, _ := role(old.Role)
	return c.start(r, old.Index, old.Port)
}

// Stop sends SIGTERM to every live process (in reverse start order of roles: the servers and
// workers first, CDC last), waits for them up to ctx or the config's StopTimeout, then kills
// what is left. It reports the processes that did not exit cleanly.
func (c *Cluster) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StopTimeout)
	defer cancel()
	procs := c.Procs()
	slices.Reverse(procs)
	for _, p := range procs {
		if p.Running() {
			_ = syscall.Kill(-p.PID, syscall.SIGTERM)
		}
	}
	var errs []error
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s (pid %d) did not stop within %s: killed", p.Name(), p.PID, c.cfg.StopTimeout))
		}
	}
	return errors.Join(errs...)
}

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// secretFlags are the flags whose values a log must not show.
var secretFlags = map[string]bool{"--token-key": true, "--webhook-secret": true, "--database-url": true}

// redact replaces the values of secretFlags with "…".
func redact(args []string) []string {
	out := slices.Clone(args)
	for i := 1; i < len(out); i++ {
		if secretFlags[out[i-1]] {
			out[i] = "…"
		}
	}
	return out
}
