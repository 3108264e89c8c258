package smtpsink

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Defaults.
const (
	// AddrDefault listens on a free loopback port.
	AddrDefault = "127.0.0.1:0"
	// MaxMessageBytesDefault bounds one message (32 MiB); larger ones get 552.
	MaxMessageBytesDefault = 32 << 20
	// TimeoutDefault bounds each read and write of a connection.
	TimeoutDefault = time.Minute
)

// ErrNotLoopback: Config.Addr is not a loopback address.
var ErrNotLoopback = errors.New("smtpsink: the sink listens on loopback only (127.0.0.1, ::1 or localhost)")

// Rule scripts an answer other than 250. The first rule that applies to a recipient answers.
type Rule struct {
	// Recipient selects whom the rule answers: an address ("a@example.com", any case), every
	// address at a domain ("@example.com"), or everyone ("").
	Recipient string
	// Fraction, when above 0 and below 1, narrows the rule to that share of the selected
	// addresses, picked by a hash of the address: the same ones on every attempt and run.
	Fraction float64
	// Code is the SMTP reply code: 400 to 599.
	Code int
	// Message is the reply text; default "scripted temporary failure" or "scripted permanent
	// failure".
	Message string
	// Times, when above 0, makes the rule answer only each recipient's first Times attempts;
	// later ones go through. 0: every attempt.
	Times int
	// AtData answers after the message's data (the reply to DATA) instead of to RCPT TO.
	AtData bool
}

func (r Rule) validate() error {
	switch {
	case r.Code < 400 || r.Code > 599:
		return fmt.Errorf("smtpsink: rule code %d: want 400 to 599", r.Code)
	case r.Fraction < 0 || r.Fraction > 1:
		return fmt.Errorf("smtpsink: rule fraction %v: want 0 to 1", r.Fraction)
	case r.Times < 0:
		return fmt.Errorf("smtpsink: rule times %d: want 0 or more", r.Times)
	}
	return nil
}

// ParseRule parses a command-line rule: CODE[=MATCH][:OPTION...], where MATCH is an address,
// @domain or a percentage of recipients ("5%"), and the options are "data" (answer after
// DATA) and "times=N". Examples: "550=@bounce.example", "451=10%:times=2", "552=big@x.example:data".
func ParseRule(s string) (Rule, error) {
	head, opts, _ := strings.Cut(s, ":")
	codeText, match, _ := strings.Cut(head, "=")
	code, err := strconv.Atoi(strings.TrimSpace(codeText))
	if err != nil {
		return Rule{}, fmt.Errorf("smtpsink: rule %q: want CODE[=ADDRESS|@DOMAIN|N%%][:data][:times=N], e.g. 550=@bounce.example", s)
	}
	r := Rule{Code: code}
	match = strings.TrimSpace(match)
	if pct, ok := strings.CutSuffix(match, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || f <= 0 || f > 100 {
			return Rule{}, fmt.Errorf("smtpsink: rule %q: a share is a percentage above 0 and at most 100", s)
		}
		r.Fraction = f / 100
	} else {
		r.Recipient = match
	}
	for _, o := range strings.Split(opts, ":") {
		switch o = strings.TrimSpace(o); {
		case o == "":
		case o == "data":
			r.AtData = true
		case strings.HasPrefix(o, "times="):
			if r.Times, err = strconv.Atoi(o[len("times="):]); err != nil || r.Times < 1 {
				return Rule{}, fmt.Errorf("smtpsink: rule %q: times=N wants a whole number from 1", s)
			}
		default:
			return Rule{}, fmt.Errorf("smtpsink: rule %q: unknown option %q (want data or times=N)", s, o)
		}
	}
	return r, r.validate()
}

// Config configures a Sink. Zero values mean the defaults.
type Config struct {
	// Addr is the loopback host:port to listen on; default AddrDefault. Any other address
	// (an interface's, 0.0.0.0, an empty host) is refused.
	Addr string
	// Store keeps every accepted message in memory (Messages). Default off: only counts.
	Store bool
	// SaveDir, when set, writes every accepted message to SaveDir/NNNNNNNN.eml.
	SaveDir string
	// MaxMessageBytes bounds one message; default MaxMessageBytesDefault (32 MiB).
	MaxMessageBytes int64
	// Rules script 4xx / 5xx answers; SetRules replaces them while running.
	Rules []Rule
	// TLS, when set, offers STARTTLS with this configuration.
	TLS *tls.Config
	// Username and Password, when set, require AUTH PLAIN with them before MAIL FROM.
	Username, Password string
	// Timeout bounds each read and write; default TimeoutDefault (1 min).
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Received is one accepted message.
type Received struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // the session had run STARTTLS
	User string // the AUTH user, "" without AUTH
}

// Stats counts what a Sink saw since it started.
type Stats struct {
	Connections int64 // accepted TCP connections
	Accepted    int64 // messages answered 250 after DATA
	Rejected4xx int64 // scripted 4xx answers (RCPT or DATA)
	Rejected5xx int64 // scripted 5xx answers
	Bytes       int64 // bytes of accepted messages
	InFlight    int64 // messages between DATA and its answer right now
	MaxInFlight int64 // the most there were at once
	ReplyWrites int64 // writes the replies took (replies to pipelined commands share one)
}

// Sink is a running SMTP sink. Its methods are safe for concurrent use.
type Sink struct {
	cfg    Config
	srv    *smtp.Server
	ln     *trackingListener
	served chan struct{}

	connections, accepted, rej4, rej5, bytes, inFlight, maxInFlight, seq, replyWrites atomic.Int64

	mu       sync.Mutex
	rules    []Rule
	attempts map[string]int // by rule index and recipient: how often the rule answered
	messages []Received
	gate     chan struct{} // closed while deliveries flow; open (blocking) while paused
	changed  chan struct{} // closed and replaced on every count change (WaitFor)
}

// Start listens on cfg.Addr and serves until Stop or Close.
func Start(cfg Config) (*Sink, error) {
	cfg.Addr = cmp.Or(cfg.Addr, AddrDefault)
	cfg.MaxMessageBytes = cmp.Or(cfg.MaxMessageBytes, MaxMessageBytesDefault)
	cfg.Timeout = cmp.Or(cfg.Timeout, TimeoutDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, r := range cfg.Rules {
		if err := r.validate(); err != nil {
			return nil, err
		}
	}
	if err := checkLoopback(cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.SaveDir != "" {
		if err := os.MkdirAll(cfg.SaveDir, 0o755); err != nil {
			return nil, fmt.Errorf("smtpsink: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtpsink: listen on %s: %w", cfg.Addr, err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("smtpsink: %s listens on %s, not loopback", cfg.Addr, ip)
	}
	open := make(chan struct{})
	close(open)
	s := &Sink{cfg: cfg, rules: cfg.Rules, attempts: map[string]int{}, gate: open, changed: make(chan struct{}), served: make(chan struct{})}
	s.ln = &trackingListener{Listener: ln, n: &s.connections, onAccept: s.notify, conns: map[*trackedConn]struct{}{}, timeout: cfg.Timeout,
		writes: &s.replyWrites}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "sink.localhost"
	s.srv.MaxMessageBytes = cfg.MaxMessageBytes
	s.srv.MaxRecipients = 100
	s.srv.ReadTimeout, s.srv.WriteTimeout = cfg.Timeout, cfg.Timeout
	s.srv.TLSConfig = cfg.TLS
	s.srv.AllowInsecureAuth = true // loopback only
	s.srv.ErrorLog = slogLogger{cfg.Logger}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(s.ln); err != nil {
			cfg.Logger.Error("smtp sink stopped", "err", err)
		}
	}()
	return s, nil
}

// checkLoopback accepts host:port where host is a loopback IP or "localhost".
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: address %q: want host:port, e.g. 127.0.0.1:2525", ErrNotLoopback, addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: not %q", ErrNotLoopback, addr)
	}
	return nil
}

// Addr is the address the sink listens on, host:port.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// URL is the sink as a relay's --smtp URL: smtp://127.0.0.1:PORT.
func (s *Sink) URL() string { return "smtp://" + s.Addr() }

// Stats returns the counts so far.
func (s *Sink) Stats() Stats {
	return Stats{
		Connections: s.connections.Load(), Accepted: s.accepted.Load(), Rejected4xx: s.rej4.Load(),
		Rejected5xx: s.rej5.Load(), Bytes: s.bytes.Load(), InFlight: s.inFlight.Load(), MaxInFlight: s.maxInFlight.Load(),
		ReplyWrites: s.replyWrites.Load(),
	}
}

// WaitFor returns once cond holds for the sink's Stats, or ctx's error.
func (s *Sink) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond(s.Stats()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("smtpsink: waiting, with %+v: %w", s.Stats(), ctx.Err())
		case <-changed:
		}
	}
}

func (s *Sink) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Messages returns the accepted messages in order (Config.Store).
func (s *Sink) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.messages...)
}

// SetRules replaces the scripted answers and forgets how often the old ones answered.
func (s *Sink) SetRules(rules []Rule) error {
	for _, r := range rules {
		if err := r.validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules, s.attempts = rules, map[string]int{}
	return nil
}

// Pause holds every message after its data until Resume: InFlight shows how many senders
// wait at once.
func (s *Sink) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
		s.gate = make(chan struct{})
	default: // already paused
	}
}

// Resume lets held and later messages through.
func (s *Sink) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
}

// DropConnections closes every open connection, as a provider closing idle ones does; the
// sink keeps listening.
func (s *Sink) DropConnections() { s.ln.closeConns() }

// Stop stops accepting connections and waits for open ones to end, then closes those left
// when ctx ends. Held messages are let through first.
func (s *Sink) Stop(ctx context.Context) error {
	s.Resume()
	err := s.srv.Shutdown(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		s.ln.closeConns()
		err = nil
	}
	return s.finish(err)
}

// Close closes the listener and every connection at once.
func (s *Sink) Close() error {
	s.Resume()
	err := s.srv.Close()
	s.ln.closeConns()
	return s.finish(err)
}

// finish closes the listener (Serve may not have registered it with the server yet) and
// waits for Serve to return.
func (s *Sink) finish(err error) error {
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	<-s.served
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// answer returns the scripted error for one recipient at one stage, or nil.
func (s *Sink) answer(rcpt string, atData bool) *smtp.SMTPError {
	addr := strings.ToLower(rcpt)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.rules {
		if r.AtData != atData || !r.matches(addr) {
			continue
		}
		key := strconv.Itoa(i) + " " + addr
		if r.Times > 0 && s.attempts[key] >= r.Times {
			continue
		}
		s.attempts[key]++
		if r.Code < 500 {
			s.rej4.Add(1)
		} else {
			s.rej5.Add(1)
		}
		msg := r.Message
		if msg == "" {
			msg = "scripted permanent failure"
			if r.Code < 500 {
				msg = "scripted temporary failure"
			}
		}
		return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode{r.Code / 100, 0, 0}, Message: msg + " for <" + rcpt + ">"}
	}
	return nil
}

func (r Rule) matches(addr string) bool {
	switch want := strings.ToLower(r.Recipient); {
	case want == "":
	case strings.HasPrefix(want, "@"):
		if !strings.HasSuffix(addr, want) {
			return false
		}
	case addr != want:
		return false
	}
	if r.Fraction <= 0 || r.Fraction >= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(addr))
	return float64(h.Sum32()) < r.Fraction*math.MaxUint32
}

// InFraction reports whether a share rule (Rule.Fraction) picks addr: tests use it to know
// which recipients a run refuses.
func InFraction(addr string, fraction float64) bool {
	return Rule{Fraction: fraction}.matches(strings.ToLower(addr))
}

type backend struct{ s *Sink }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s      *Sink
	conn   *smtp.Conn
	user   string
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (se *session) AuthMechanisms() []string {
	if se.s.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != se.s.cfg.Username || pass != se.s.cfg.Password {
			return smtp.ErrAuthFailed
		}
		se.user, se.authed = user, true
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.cfg.Username != "" && !se.authed {
		return smtp.ErrAuthRequired
	}
	se.from, se.to = from, nil
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := se.s.answer(to, false); err != nil {
		se.s.notify()
		return err
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	s := se.s
	n := s.inFlight.Add(1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	s.notify()
	defer func() {
		s.inFlight.Add(-1)
		s.notify()
	}()
	// Only a sink that keeps messages holds one in memory; a counting sink (the benchmarks')
	// reads it through io.Discard's pooled buffer.
	var buf bytes.Buffer
	var size int64
	var err error
	if s.cfg.Store || s.cfg.SaveDir != "" {
		size, err = io.Copy(&buf, r)
	} else {
		size, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	<-gate
	for _, rcpt := range se.to {
		if err := s.answer(rcpt, true); err != nil {
			return err
		}
	}
	id := s.seq.Add(1)
	_, isTLS := se.conn.TLSConnectionState()
	if s.cfg.Store {
		s.mu.Lock()
		s.messages = append(s.messages, Received{From: se.from, To: se.to, Data: buf.Bytes(), TLS: isTLS, User: se.user})
		s.mu.Unlock()
	}
	if s.cfg.SaveDir != "" {
		if err := os.WriteFile(filepath.Join(s.cfg.SaveDir, fmt.Sprintf("%08d.eml", id)), buf.Bytes(), 0o644); err != nil {
			s.cfg.Logger.Error("smtp sink: save message", "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "could not save the message"}
		}
	}
	s.bytes.Add(size)
	s.accepted.Add(1)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("OK: queued as sink-%d", id)}
}

func (se *session) Reset() { se.from, se.to = "", nil }

func (se *session) Logout() error { return nil }

// trackingListener counts accepted connections and keeps the open ones, so a hard stop can
// close them after the server's graceful shutdown gave up.
type trackingListener struct {
	net.Listener
	n        *atomic.Int64
	onAccept func()
	timeout  time.Duration // of a write of held replies
	writes   *atomic.Int64

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.n.Add(1)
	l.onAccept()
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Conn.Close()
	}
}

// trackedConn also answers pipelined commands the way RFC 2920 asks of a server: go-smtp
// flushes every reply, and the conn holds them until the server reads again, so the replies
// to commands that arrived together (MAIL FROM and RCPT TO) leave in one segment.
type trackedConn struct {
	net.Conn
	l *trackingListener

	mu      sync.Mutex
	pending []byte // replies not yet written
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, p...)
	return len(p), nil
}

// flush writes the held replies, within the sink's timeout from now (a deadline set for the
// replies meanwhile may have passed: crypto/tls sets one to now once it queued its
// close_notify); the caller holds mu.
func (c *trackedConn) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.l.timeout))
	c.l.writes.Add(1)
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	if cap(c.pending) > 64<<10 {
		c.pending = nil
	}
	return err
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flush() // before waiting for the client, who may be waiting for these
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	c.mu.Lock()
	_ = c.flush() // a last reply (221 to QUIT)
	c.mu.Unlock()
	return c.Conn.Close()
}

// slogLogger adapts slog to go-smtp's logger.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	l.l.Debug("smtp sink: " + fmt.Sprintf(format, v...))
}
func (l slogLogger) Println(v ...any) { l.l.Debug("smtp sink: " + fmt.Sprintln(v...)) }
