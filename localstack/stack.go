package localstack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Emulator names accepted by Config.KinesisEmulator and TAILOR_KINESIS_EMULATOR.
const (
	EmulatorKinesalite  = "kinesalite"   // npm kinesalite@3.3.3: fast (~10k puts/s here), has SplitShard/MergeShards
	EmulatorKinesisMock = "kinesis-mock" // npm kinesis-local@0.6.2: the engine LocalStack runs; faithful, ~400 puts/s
	EmulatorDynalite    = "dynalite"     // npm dynalite@4.0.0
	EmulatorDocker      = "localstack-docker"
)

// Backends accepted by Config.Backend and TAILOR_LOCALSTACK.
const (
	BackendNPM    = "npm"    // emulators from npm, the default
	BackendDocker = "docker" // LocalStack through testcontainers-go; needs a Docker engine
)

// Defaults for Config.
const (
	DirDefault          = ".tailor"
	RegionDefault       = "us-east-1"
	ReadyTimeoutDefault = 60 * time.Second
	StateFileName       = "state.json"
)

// ErrNotRunning is returned by Load and Down when a directory holds no running stack.
var ErrNotRunning = errors.New("local stack is not running")

// Config says how to start a stack. Zero values mean defaults.
type Config struct {
	// Dir holds the state file, logs and (when not root) the Postgres data. Default ".tailor".
	Dir string
	// Backend is BackendNPM (default) or BackendDocker.
	Backend string
	// KinesisEmulator is EmulatorKinesalite (default) or EmulatorKinesisMock. Ignored with Docker.
	KinesisEmulator string
	// Detached stacks outlive the starting process (tailor dev up); attached ones (tests) die with it.
	Detached bool
	// ReadyTimeout bounds the wait for every service to answer. Default 60s.
	ReadyTimeout time.Duration
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	c.Dir = cmp.Or(c.Dir, DirDefault)
	c.Backend = cmp.Or(c.Backend, BackendNPM)
	c.KinesisEmulator = cmp.Or(c.KinesisEmulator, EmulatorKinesalite)
	c.ReadyTimeout = cmp.Or(c.ReadyTimeout, ReadyTimeoutDefault)
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	return c
}

func (c Config) validate() error {
	switch c.Backend {
	case BackendNPM, BackendDocker:
	default:
		return fmt.Errorf("localstack: backend %q: want %q or %q (TAILOR_LOCALSTACK)", c.Backend, BackendNPM, BackendDocker)
	}
	switch c.KinesisEmulator {
	case EmulatorKinesalite, EmulatorKinesisMock:
	default:
		return fmt.Errorf("localstack: kinesis emulator %q: want %q or %q (TAILOR_KINESIS_EMULATOR)", c.KinesisEmulator, EmulatorKinesalite, EmulatorKinesisMock)
	}
	return nil
}

// State is what a running stack writes to <Dir>/state.json so that every other command finds it.
// The file is written with mode 0600 because it holds the Postgres password.
type State struct {
	Dir       string        `json:"dir"`
	Backend   string        `json:"backend"`
	Detached  bool          `json:"detached"`
	Region    string        `json:"region"`
	StartedAt time.Time     `json:"started_at"`
	Postgres  PostgresState `json:"postgres"`
	Kinesis   Service       `json:"kinesis"`
	DynamoDB  Service       `json:"dynamodb"`
	// Container is the Docker container id of LocalStack with BackendDocker.
	Container string `json:"container,omitempty"`
}

// PostgresState describes the private cluster.
type PostgresState struct {
	URL     string `json:"url"` // postgres://tailor:...@127.0.0.1:PORT/tailor?sslmode=disable
	Port    int    `json:"port"`
	Home    string `json:"home"` // data and socket directories live below it
	PID     int    `json:"pid"`
	OSUser  string `json:"os_user"`
	Version string `json:"version"`
}

// Service is one emulator process (or the LocalStack container).
type Service struct {
	Emulator string `json:"emulator"`
	URL      string `json:"url"`
	PID      int    `json:"pid,omitempty"`
	Log      string `json:"log,omitempty"`
}

// Credentials the emulators accept; they check nothing but their presence.
const (
	AccessKeyID     = "tailor"
	SecretAccessKey = "tailor-local"
)

// Load reads the state file in dir. It returns ErrNotRunning when there is none.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s in %s; start it with `tailor dev up`)", ErrNotRunning, StateFileName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("localstack: read state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("localstack: state file %s is corrupt (remove it or run `tailor dev down`): %w", filepath.Join(dir, StateFileName), err)
	}
	return &st, nil
}

// Find looks for a running stack's state file: in $TAILOR_DIR when set, else in ./.tailor and
// the .tailor folders of the parent directories. It returns the directory holding state.json.
func Find() (string, bool) {
	if d := os.Getenv("TAILOR_DIR"); d != "" {
		_, err := os.Stat(filepath.Join(d, StateFileName))
		return d, err == nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, DirDefault)
		if _, err := os.Stat(filepath.Join(cand, StateFileName)); err == nil {
			return cand, true
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

func (st *State) save() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(st.Dir, StateFileName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("localstack: write state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(st.Dir, StateFileName))
}

// Env returns the shell assignments that `eval $(tailor dev env)` exports, so that psql, the AWS
// CLI and other tools reach the stack.
func (st *State) Env() []string {
	return []string{
		"TAILOR_DIR=" + st.Dir,
		"DATABASE_URL=" + st.Postgres.URL,
		"TAILOR_DATABASE_URL=" + st.Postgres.URL,
		"AWS_ENDPOINT_URL_KINESIS=" + st.Kinesis.URL,
		"AWS_ENDPOINT_URL_DYNAMODB=" + st.DynamoDB.URL,
		"AWS_REGION=" + st.Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
	}
}

// Stack is a started stack. Stop it with Stop; an attached stack's processes also die when the
// process that started it exits.
type Stack struct {
	cfg   Config
	state *State
	procs []*proc // started processes, in start order
	stopC func(context.Context) error
}

// State returns the stack's state (endpoints, URLs).
func (s *Stack) State() *State { return s.state }

// Start starts a stack as cfg says and waits until every service answers. With cfg.Detached and a
// healthy stack already running in cfg.Dir, it returns that stack unchanged (idempotent up).
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	if old, err := Load(dir); err == nil {
		if len(old.Check(ctx)) == 0 && cfg.Detached && old.Detached {
			cfg.Log("local stack already running in %s", dir)
			return &Stack{cfg: cfg, state: old}, nil
		}
		cfg.Log("state file in %s names a stack that is not healthy: stopping what is left of it", dir)
		if err := stopState(ctx, old); err != nil {
			return nil, err
		}
	}

	s := &Stack{cfg: cfg, state: &State{Dir: dir, Backend: cfg.Backend, Detached: cfg.Detached, Region: RegionDefault, StartedAt: time.Now().UTC()}}
	ok := false
	defer func() {
		if !ok {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = s.Stop(stopCtx)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()

	if err := s.startPostgres(ctx); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendDocker:
		if err := s.startDocker(ctx); err != nil {
			return nil, err
		}
	default:
		if err := s.startEmulators(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.state.save(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Stop stops every process of the stack, removes its data and its state file. It is idempotent.
func (s *Stack) Stop(ctx context.Context) error {
	if s.state == nil {
		return nil
	}
	if len(s.procs) == 0 && s.stopC == nil {
		// A running detached stack that Start found through its state file: stop it by PID.
		err := stopState(ctx, s.state)
		s.state = nil
		return err
	}
	var errs []error
	if s.stopC != nil {
		errs = append(errs, s.stopC(ctx))
		s.stopC = nil
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		errs = append(errs, s.procs[i].stop(ctx))
	}
	s.procs = nil
	errs = append(errs, removeData(s.state))
	s.state = nil
	return errors.Join(errs...)
}

// Down stops the detached stack whose state file is in dir. It returns nil when none runs.
func Down(ctx context.Context, dir string) error {
	st, err := Load(dir)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	return stopState(ctx, st)
}

// stopState stops the processes a state file names (checking that each PID still runs the
// program it names, so a reused PID is never signalled) and removes the stack's data.
func stopState(ctx context.Context, st *State) error {
	var errs []error
	for _, svc := range []Service{st.Kinesis, st.DynamoDB} {
		if svc.PID != 0 {
			errs = append(errs, stopPID(ctx, svc.PID, "node", true, syscall.SIGTERM))
		}
	}
	if st.Container != "" {
		errs = append(errs, removeContainer(ctx, st.Container))
	}
	if st.Postgres.PID != 0 {
		errs = append(errs, stopPID(ctx, st.Postgres.PID, "postgres", false, syscall.SIGINT)) // fast shutdown
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return removeData(st)
}

func removeData(st *State) error {
	var errs []error
	// Only ever remove a directory this package made: a tailor-pg-* temp dir or <Dir>/pg.
	if h := st.Postgres.Home; h != "" && (strings.HasPrefix(filepath.Base(h), "tailor-pg") || h == filepath.Join(st.Dir, "pg")) {
		errs = append(errs, os.RemoveAll(st.Postgres.Home))
	}
	_ = os.Remove(filepath.Join(st.Dir, "pg")) // the symlink to Home, when there is one
	if err := os.Remove(filepath.Join(st.Dir, StateFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
