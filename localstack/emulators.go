package localstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/jackc/pgx/v5"
)

// The emulators' npm manifest and lockfile are embedded so the tailor binary can install them
// (npm ci, pinned by the lockfile) wherever it runs, not only inside a checkout.
var (
	//go:embed package.json
	npmManifest []byte
	//go:embed package-lock.json
	npmLock []byte
	//go:embed loopback.js
	loopbackJS []byte
)

// EmulatorDir installs the npm emulators (once per lockfile) and returns the folder that holds
// node_modules: $TAILOR_NPM_DIR, else <user cache dir>/tailor/emulators-<lockfile hash>. Concurrent
// callers (parallel test binaries) serialise on a file lock.
func EmulatorDir(ctx context.Context, log func(string, ...any)) (string, error) {
	sum := sha256.Sum256(append(append(append([]byte{}, npmManifest...), npmLock...), loopbackJS...))
	dir := os.Getenv("TAILOR_NPM_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir = filepath.Join(cache, "tailor", "emulators-"+hex.EncodeToString(sum[:6]))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("localstack: emulator dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("localstack: lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	marker := filepath.Join(dir, ".installed")
	if b, err := os.ReadFile(marker); err == nil && bytes.Equal(b, []byte(hex.EncodeToString(sum[:]))) {
		return dir, nil
	}
	for name, content := range map[string][]byte{"package.json": npmManifest, "package-lock.json": npmLock, "loopback.js": loopbackJS} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return "", err
		}
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("localstack: npm not found: install Node.js 20+ and npm (Debian: apt-get install nodejs npm)")
	}
	log("installing emulators with npm ci in %s", dir)
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("localstack: npm ci in %s failed: %w: %s", dir, err, lastLines(out, 8))
	}
	if err := os.WriteFile(marker, []byte(hex.EncodeToString(sum[:])), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

func (s *Stack) startEmulators(ctx context.Context) error {
	node, err := exec.LookPath("node")
	if err != nil {
		return errors.New("localstack: node not found: install Node.js 20+ (Debian: apt-get install nodejs npm)")
	}
	dir, err := EmulatorDir(ctx, s.cfg.Log)
	if err != nil {
		return err
	}
	logDir := filepath.Join(s.cfg.Dir, "logs")
	start := func(name, script string, args, env []string) (*proc, string, error) {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		spec := procSpec{
			name: name, path: node, dir: dir,
			args:    append([]string{"-r", filepath.Join(dir, "loopback.js"), filepath.Join(dir, "node_modules", script)}, args...),
			env:     env,
			logPath: filepath.Join(logDir, name+".log"),
			stopSig: syscall.SIGTERM, deathSig: syscall.SIGKILL, detached: s.cfg.Detached,
		}
		portArg := strconv.Itoa(port)
		if name == EmulatorKinesisMock {
			tls, err := freePort()
			if err != nil {
				return nil, "", err
			}
			spec.env = append(spec.env, "KINESIS_MOCK_PLAIN_PORT="+portArg, "KINESIS_MOCK_TLS_PORT="+strconv.Itoa(tls),
				"KINESIS_MOCK_CERT_PATH="+filepath.Join(dir, "node_modules", "kinesis-local", "server.json"))
		} else {
			spec.args = append(spec.args, "--port", portArg)
		}
		p, err := startProc(spec)
		if err != nil {
			return nil, "", err
		}
		s.procs = append(s.procs, p)
		return p, "http://127.0.0.1:" + portArg, nil
	}

	var kp *proc
	var kURL string
	switch s.cfg.KinesisEmulator {
	case EmulatorKinesisMock:
		kp, kURL, err = start(EmulatorKinesisMock, "kinesis-local/main.js", nil, []string{
			"SHARD_LIMIT=200", "CREATE_STREAM_DURATION=100ms", "DELETE_STREAM_DURATION=100ms",
			"SPLIT_SHARD_DURATION=100ms", "MERGE_SHARDS_DURATION=100ms", "UPDATE_SHARD_COUNT_DURATION=100ms", "LOG_LEVEL=WARN",
		})
	default:
		kp, kURL, err = start(EmulatorKinesalite, "kinesalite/cli.js",
			[]string{"--shardLimit", "200", "--createStreamMs", "50", "--deleteStreamMs", "50", "--updateStreamMs", "50"}, nil)
	}
	if err != nil {
		return err
	}
	s.state.Kinesis = Service{Emulator: s.cfg.KinesisEmulator, URL: kURL, PID: kp.pid(), Log: kp.spec.logPath}
	dp, dURL, err := start(EmulatorDynalite, "dynalite/cli.js",
		[]string{"--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"}, nil)
	if err != nil {
		return err
	}
	s.state.DynamoDB = Service{Emulator: EmulatorDynalite, URL: dURL, PID: dp.pid(), Log: dp.spec.logPath}

	if err := waitReady(ctx, kp, s.cfg.KinesisEmulator, s.state.kinesisCheck); err != nil {
		return err
	}
	if err := waitReady(ctx, dp, EmulatorDynalite, s.state.dynamoCheck); err != nil {
		return err
	}
	s.cfg.Log("%s ready at %s, dynalite ready at %s", s.cfg.KinesisEmulator, kURL, dURL)
	return nil
}

// AWSConfig returns an AWS SDK configuration with the emulators' static credentials. Use it with
// the per-service endpoints in Kinesis.URL and DynamoDB.URL.
func (st *State) AWSConfig() aws.Config {
	return aws.Config{
		Region:      st.Region,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	}
}

func (st *State) kinesisCheck(ctx context.Context) error {
	c := kinesis.NewFromConfig(st.AWSConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(st.Kinesis.URL); o.RetryMaxAttempts = 1 })
	_, err := c.ListStreams(ctx, &kinesis.ListStreamsInput{})
	return err
}

func (st *State) dynamoCheck(ctx context.Context) error {
	c := dynamodb.NewFromConfig(st.AWSConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(st.DynamoDB.URL); o.RetryMaxAttempts = 1 })
	_, err := c.ListTables(ctx, &dynamodb.ListTablesInput{})
	return err
}

// Check asks every service of the stack whether it answers and returns one error per service
// that does not; an empty result means healthy.
func (st *State) Check(ctx context.Context) []error {
	var errs []error
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, st.Postgres.URL); err != nil {
		errs = append(errs, fmt.Errorf("postgres: %w", err))
	} else {
		_ = c.Close(ctx)
	}
	if err := st.kinesisCheck(ctx); err != nil {
		errs = append(errs, fmt.Errorf("kinesis: %w", err))
	}
	if err := st.dynamoCheck(ctx); err != nil {
		errs = append(errs, fmt.Errorf("dynamodb: %w", err))
	}
	return errs
}

// PauseEmulator stops the named emulator ("kinesis" or "dynamodb") of the npm stack in dir
// with SIGSTOP for d, then lets it go on (SIGCONT): an outage in which every call hangs or
// times out, and after which its data is intact (the emulators keep their data in memory, so
// a restart would lose it). It is for fault injection (the chaos harness).
func PauseEmulator(ctx context.Context, dir, name string, d time.Duration) error {
	st, err := Load(dir)
	if err != nil {
		return err
	}
	var svc Service
	switch name {
	case "kinesis":
		svc = st.Kinesis
	case "dynamodb":
		svc = st.DynamoDB
	default:
		return fmt.Errorf("localstack: pause %q: want kinesis or dynamodb", name)
	}
	if svc.PID == 0 || !pidRuns(svc.PID, "node") {
		return fmt.Errorf("localstack: pause %s: no emulator process (backend %s)", name, st.Backend)
	}
	if err := syscall.Kill(-svc.PID, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("localstack: pause %s: %w", name, err)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	if err := syscall.Kill(-svc.PID, syscall.SIGCONT); err != nil {
		return fmt.Errorf("localstack: resume %s: %w", name, err)
	}
	return nil
}
