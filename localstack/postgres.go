package localstack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// DatabaseName is the database the stack creates for Tailor; tests create their own beside it.
const DatabaseName = "tailor"

// pgBinDir finds the PostgreSQL server binaries: $TAILOR_PG_BINDIR, pg_config --bindir, or the
// newest /usr/lib/postgresql/*/bin.
func pgBinDir() (string, error) {
	if d := os.Getenv("TAILOR_PG_BINDIR"); d != "" {
		return d, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("localstack: PostgreSQL server binaries (initdb, postgres) not found: install them (Debian: apt-get install postgresql) or set TAILOR_PG_BINDIR")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// pgOSUser is the account postgres runs as: the current user, or "postgres" (TAILOR_PG_OS_USER)
// when we are root, because postgres refuses to run as root.
func pgOSUser() (*user.User, *syscall.Credential, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		return u, nil, err
	}
	name := os.Getenv("TAILOR_PG_OS_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, nil, fmt.Errorf("localstack: running as root, postgres must run as an unprivileged user and %q does not exist: create it (useradd --system %s) or set TAILOR_PG_OS_USER", name, name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return u, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// pgHome picks the directory that holds the cluster's data and sockets. As root the checkout may
// sit below a directory the postgres user cannot enter (a 0700 home), so the cluster lives in a
// directory of its own under the system temp dir, owned by that user, and <Dir>/pg links to it.
func (s *Stack) pgHome(cred *syscall.Credential) (string, error) {
	if !s.cfg.Detached {
		home, err := os.MkdirTemp("", "tailor-pg-")
		if err != nil {
			return "", err
		}
		return home, chownHome(home, cred)
	}
	if cred == nil {
		home := filepath.Join(s.cfg.Dir, "pg")
		return home, os.MkdirAll(home, 0o700)
	}
	sum := sha256.Sum256([]byte(s.cfg.Dir))
	home := filepath.Join(os.TempDir(), "tailor-pg-"+hex.EncodeToString(sum[:6]))
	if err := os.RemoveAll(home); err != nil {
		return "", err
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		return "", err
	}
	link := filepath.Join(s.cfg.Dir, "pg")
	_ = os.Remove(link)
	if err := os.Symlink(home, link); err != nil {
		return "", err
	}
	return home, chownHome(home, cred)
}

func chownHome(home string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(home, int(cred.Uid), int(cred.Gid))
}

func randomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Stack) startPostgres(ctx context.Context) error {
	bin, err := pgBinDir()
	if err != nil {
		return err
	}
	osUser, cred, err := pgOSUser()
	if err != nil {
		return err
	}
	home, err := s.pgHome(cred)
	if err != nil {
		return fmt.Errorf("localstack: postgres home: %w", err)
	}
	s.state.Postgres.Home = home
	s.state.Postgres.OSUser = osUser.Username
	data, run := filepath.Join(home, "data"), filepath.Join(home, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		return err
	}
	if err := chownHome(run, cred); err != nil {
		return err
	}

	password := randomPassword()
	pwfile := filepath.Join(home, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	if err := chownHome(pwfile, cred); err != nil {
		return err
	}
	logDir := filepath.Join(s.cfg.Dir, "logs")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "tailor", "--pwfile="+pwfile,
		"--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = home // the cwd must be reachable by the postgres user
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	s.cfg.Log("postgres: initdb %s (as %s)", data, osUser.Username)
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.WriteFile(filepath.Join(logDir, "initdb.log"), out, 0o644)
		return fmt.Errorf("localstack: initdb failed: %w: %s", err, lastLines(out, 5))
	}
	_ = os.Remove(pwfile)

	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := startPostgresProc(bin, home, logDir, port, cred, s.cfg.Detached)
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.state.Postgres.PID = p.pid()
	s.state.Postgres.Port = port

	admin := pgURL(password, port, "postgres")
	if err := waitReady(ctx, p, "postgres", func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&s.state.Postgres.Version); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+DatabaseName); err != nil {
		return fmt.Errorf("localstack: create database: %w", err)
	}
	s.state.Postgres.URL = pgURL(password, port, DatabaseName)
	s.cfg.Log("postgres %s ready on 127.0.0.1:%d", s.state.Postgres.Version, port)
	return nil
}

// startPostgresProc starts the postmaster over home/data on port.
func startPostgresProc(bin, home, logDir string, port int, cred *syscall.Credential, detached bool) (*proc, error) {
	data, run := filepath.Join(home, "data"), filepath.Join(home, "run")
	socketDir := run
	if len(socketDir) > 80 { // a Unix socket path is at most 107 bytes
		socketDir = ""
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + socketDir,
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=64",
		"-c", "max_wal_senders=64",
		"-c", "max_connections=300",
		"-c", "fsync=off", // a disposable dev/test cluster: crash safety across OS crashes is not needed
		"-c", "full_page_writes=off",
		"-c", "wal_sender_timeout=30s",
	}
	return startProc(procSpec{
		name: "postgres", path: filepath.Join(bin, "postgres"), args: args, dir: home,
		logPath: filepath.Join(logDir, "postgres.log"), cred: cred,
		stopSig: syscall.SIGINT, deathSig: syscall.SIGQUIT, detached: detached,
	})
}

// RestartPostgres stops the detached stack's Postgres in dir (a fast shutdown: every session
// is cut) and starts it again on the same port and data, then waits until it answers. The
// state file gets the new pid. It is for fault injection (the chaos harness) and operators.
func RestartPostgres(ctx context.Context, dir string) (*State, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if !st.Detached || st.Backend == "" || st.Postgres.Home == "" {
		return nil, fmt.Errorf("localstack: restart postgres: the stack in %s is not a detached one from `tailor dev up`", dir)
	}
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	_, cred, err := pgOSUser()
	if err != nil {
		return nil, err
	}
	if err := stopPID(ctx, st.Postgres.PID, "postgres", false, syscall.SIGINT); err != nil {
		return nil, err
	}
	p, err := startPostgresProc(bin, st.Postgres.Home, filepath.Join(st.Dir, "logs"), st.Postgres.Port, cred, true)
	if err != nil {
		return nil, err
	}
	st.Postgres.PID = p.pid()
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeoutDefault)
	defer cancel()
	if err := waitReady(ctx, p, "postgres", func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, st.Postgres.URL)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		return nil, err
	}
	return st, st.save()
}

func pgURL(password string, port int, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("tailor", password), Host: "127.0.0.1:" + strconv.Itoa(port), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// DatabaseURL returns the stack's Postgres URL with the database name replaced.
func (st *State) DatabaseURL(db string) string {
	u, err := url.Parse(st.Postgres.URL)
	if err != nil {
		return st.Postgres.URL
	}
	u.Path = "/" + db
	return u.String()
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
