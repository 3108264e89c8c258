package delivery

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTP defaults.
const (
	// SMTPMaxConnsDefault is how many connections an SMTPSender opens at most.
	SMTPMaxConnsDefault = 8
	// SMTPMessagesPerConnDefault: after this many messages a connection is closed and a new
	// one opened, as providers limit messages per connection.
	SMTPMessagesPerConnDefault = 1000
	// SMTPIdleTimeoutDefault: a pooled connection idle longer is closed, not reused.
	SMTPIdleTimeoutDefault = 30 * time.Second
	// SMTPDialTimeoutDefault bounds opening a connection, TLS and AUTH included.
	SMTPDialTimeoutDefault = 15 * time.Second
	// SMTPCommandTimeoutDefault bounds each SMTP command's answer.
	SMTPCommandTimeoutDefault = time.Minute
)

// TLSMode says how an smtp:// connection uses TLS (smtps:// always starts with TLS).
type TLSMode string

// TLS modes.
const (
	TLSAuto     TLSMode = ""         // STARTTLS when the server offers it (the default)
	TLSStartTLS TLSMode = "starttls" // STARTTLS or fail
	TLSOff      TLSMode = "off"      // never: plain text
)

// ParseTLSMode parses a --smtp-tls value: auto, starttls or off.
func ParseTLSMode(s string) (TLSMode, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return TLSAuto, nil
	case "starttls", "required":
		return TLSStartTLS, nil
	case "off", "none":
		return TLSOff, nil
	}
	return "", fmt.Errorf("TLS mode %q: want auto, starttls or off", s)
}

// SMTPConfig configures an SMTPSender. Zero values mean the defaults.
type SMTPConfig struct {
	// URL is the server: smtp://[user:password@]host[:port] (port 25 by default; STARTTLS as
	// TLS says) or smtps://... (TLS from the start, port 465 by default). Required.
	URL string
	// TLS applies to smtp:// URLs; default TLSAuto.
	TLS TLSMode
	// TLSConfig verifies the server (RootCAs, ServerName: default the URL's host, TLS 1.2 at
	// least); default the system's roots.
	TLSConfig *tls.Config
	// Username and Password authenticate with AUTH PLAIN; default the URL's user info. AUTH
	// is refused over plain text except to a loopback server.
	Username, Password string
	// HelloName is the EHLO name; default the host name.
	HelloName string
	// MaxConns bounds open connections; default SMTPMaxConnsDefault (8). Give it the relay's
	// concurrency.
	MaxConns int
	// MessagesPerConn: default SMTPMessagesPerConnDefault (1000).
	MessagesPerConn int
	// IdleTimeout: default SMTPIdleTimeoutDefault (30 s).
	IdleTimeout time.Duration
	// DialTimeout: default SMTPDialTimeoutDefault (15 s).
	DialTimeout time.Duration
	// CommandTimeout: default SMTPCommandTimeoutDefault (1 min).
	CommandTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// SMTPSender delivers messages over pooled SMTP connections: a connection carries one message
// after another (MAIL, RCPT, DATA), up to MessagesPerConn, and goes back to the pool between
// them. It implements Sender and is safe for concurrent use.
type SMTPSender struct {
	cfg         SMTPConfig
	addr, host  string
	implicitTLS bool
	tlsConfig   *tls.Config

	slots    chan struct{}    // one token per open connection
	idle     chan *smtpConn   // connections waiting for a message
	starttls atomic.Int32     // what TLSAuto learnt: starttlsUnknown, starttlsOffered, starttlsAbsent
	dials    atomic.Int64     // connections opened
	closed   atomic.Bool      // Close was called
	done     chan struct{}    // closed by Close
	now      func() time.Time // for idle expiry
}

const (
	starttlsUnknown int32 = iota
	starttlsOffered
	starttlsAbsent
)

type smtpConn struct {
	c        *smtp.Client
	conn     net.Conn
	messages int
	idleAt   time.Time
	broken   bool
	// fast is set when the server offers PIPELINING and CHUNKING and conn is the connection
	// the client talks on (not one go-smtp secured with STARTTLS inside): a transaction is
	// then two writes and two round trips (MAIL and RCPT; BDAT LAST and the message), with
	// no byte-by-byte dot-stuffing on either side.
	fast *textproto.Conn
	size bool // the server takes MAIL FROM's SIZE parameter
}

// NewSMTPSender checks cfg; it connects on the first Send (or Check).
func NewSMTPSender(cfg SMTPConfig) (*SMTPSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "smtp" && u.Scheme != "smtps") || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("delivery: SMTP URL %q: want smtp://[user:password@]host[:port] or smtps://[user:password@]host[:port]", redactURL(cfg.URL))
	}
	s := &SMTPSender{host: u.Hostname(), implicitTLS: u.Scheme == "smtps", done: make(chan struct{}), now: time.Now}
	port := u.Port()
	if port == "" {
		port = map[bool]string{false: "25", true: "465"}[s.implicitTLS]
	}
	s.addr = net.JoinHostPort(s.host, port)
	if u.User != nil && cfg.Username == "" {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	switch cfg.TLS {
	case TLSAuto, TLSStartTLS:
	case TLSOff:
		if s.implicitTLS {
			return nil, errors.New("delivery: an smtps:// URL always uses TLS: drop the TLS off setting or use smtp://")
		}
	default:
		return nil, fmt.Errorf("delivery: SMTPConfig.TLS %q: want auto, starttls or off", cfg.TLS)
	}
	if cfg.HelloName == "" {
		cfg.HelloName, _ = os.Hostname()
		cfg.HelloName = cmp.Or(cfg.HelloName, "localhost")
	}
	cfg.MaxConns = cmp.Or(cfg.MaxConns, SMTPMaxConnsDefault)
	cfg.MessagesPerConn = cmp.Or(cfg.MessagesPerConn, SMTPMessagesPerConnDefault)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, SMTPIdleTimeoutDefault)
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, SMTPDialTimeoutDefault)
	cfg.CommandTimeout = cmp.Or(cfg.CommandTimeout, SMTPCommandTimeoutDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConns < 0 || cfg.MessagesPerConn < 0 || cfg.IdleTimeout < 0 || cfg.DialTimeout < 0 || cfg.CommandTimeout < 0 {
		return nil, errors.New("delivery: SMTPConfig: counts and durations must not be negative")
	}
	if cfg.TLSConfig != nil {
		s.tlsConfig = cfg.TLSConfig.Clone()
	} else {
		s.tlsConfig = &tls.Config{}
	}
	s.tlsConfig.ServerName = cmp.Or(s.tlsConfig.ServerName, s.host)
	s.tlsConfig.MinVersion = max(s.tlsConfig.MinVersion, tls.VersionTLS12)
	s.cfg = cfg
	s.slots = make(chan struct{}, cfg.MaxConns)
	s.idle = make(chan *smtpConn, cfg.MaxConns)
	return s, nil
}

// redactURL hides a password in an SMTP URL for error messages.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// Dials returns how many connections the sender opened so far.
func (s *SMTPSender) Dials() int64 { return s.dials.Load() }

// Check opens a connection (TLS and AUTH included) and keeps it for the next Send: a wrong
// address, certificate or password shows at once.
func (s *SMTPSender) Check(ctx context.Context) error {
	pc, _, err := s.get(ctx)
	if err != nil {
		return err
	}
	s.put(pc)
	return nil
}

// Send implements Sender: one SMTP transaction on a pooled connection. A refusal is a
// *RejectError; the connection stays in the pool after it (RSET). A pooled connection that
// turns out to be dead before anything was sent is replaced once, transparently.
func (s *SMTPSender) Send(ctx context.Context, env Envelope, raw []byte) (SendResult, error) {
	for try := 0; ; try++ {
		pc, pooled, err := s.get(ctx)
		if err != nil {
			return SendResult{}, err
		}
		res, sent, err := s.transaction(ctx, pc, env, raw)
		var rej *RejectError
		if err == nil || errors.As(err, &rej) {
			// The server answered: the connection is healthy unless ctx cut it short.
			if !pc.broken && (rej == nil || s.reset(pc)) {
				s.put(pc)
			} else {
				s.discard(pc)
			}
			return res, err
		}
		s.discard(pc)
		if pooled && !sent && try == 0 && ctx.Err() == nil {
			continue // a stale pooled connection: nothing reached the server
		}
		return SendResult{}, fmt.Errorf("smtp %s: %w", s.addr, err)
	}
}

// transaction runs MAIL, RCPT and DATA. sent reports whether the message's data went out.
func (s *SMTPSender) transaction(ctx context.Context, pc *smtpConn, env Envelope, raw []byte) (res SendResult, sent bool, err error) {
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			pc.broken = true // its deadline was cut short: do not reuse it
		}
	}()
	pc.messages++
	if pc.fast != nil && plainAddress(env.From) && plainAddress(env.To) {
		return s.pipelined(pc, env, raw)
	}
	if err := pc.c.Mail(env.From, &smtp.MailOptions{Size: int64(len(raw))}); err != nil {
		return res, false, rejection(err, StageSender)
	}
	if err := pc.c.Rcpt(env.To, nil); err != nil {
		return res, false, rejection(err, StageRecipient)
	}
	w, err := pc.c.Data()
	if err != nil {
		return res, false, rejection(err, StageData)
	}
	if _, err := w.Write(raw); err != nil {
		return res, true, err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return res, true, rejection(err, StageData)
	}
	return SendResult{ProviderID: ProviderID(resp.StatusText), Reply: "250 " + resp.StatusText}, true, nil
}

// plainAddress: an ASCII address with nothing that could end or extend an SMTP command
// (others take go-smtp's path, which checks them and adds SMTPUTF8).
func plainAddress(a string) bool {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return a != ""
}

// pipelined sends MAIL FROM and RCPT TO in one write (RFC 2920 PIPELINING) and, once both
// were accepted, BDAT n LAST with the message in a second (RFC 3030 CHUNKING): two round
// trips per message, no dot-stuffing. The message goes out only after the server accepted
// the envelope, so a server that does not skip a refused chunk as RFC 3030 asks can never
// read message lines as commands. sent is false until the message was written.
func (s *SMTPSender) pipelined(pc *smtpConn, env Envelope, raw []byte) (res SendResult, sent bool, err error) {
	t := pc.fast
	_ = pc.conn.SetDeadline(s.now().Add(s.cfg.CommandTimeout))
	defer pc.conn.SetDeadline(time.Time{}) //nolint:errcheck
	w := t.W
	w.WriteString("MAIL FROM:<")
	w.WriteString(env.From)
	w.WriteByte('>')
	if pc.size {
		w.WriteString(" SIZE=")
		w.WriteString(strconv.Itoa(len(raw)))
	}
	w.WriteString("\r\nRCPT TO:<")
	w.WriteString(env.To)
	w.WriteString(">\r\n")
	if err := w.Flush(); err != nil {
		return res, false, err
	}
	var refused error
	for _, stage := range []Stage{StageSender, StageRecipient} {
		_, _, err := t.ReadResponse(250)
		var te *textproto.Error
		switch {
		case err == nil:
		case errors.As(err, &te):
			if refused == nil {
				refused = &RejectError{Code: te.Code, Stage: stage, Reply: fmt.Sprintf("%d %s", te.Code, te.Msg)}
			}
		default:
			return res, false, err // a broken connection: nothing was sent
		}
	}
	if refused != nil {
		return res, false, refused
	}
	w.WriteString("BDAT ")
	w.WriteString(strconv.Itoa(len(raw)))
	w.WriteString(" LAST\r\n")
	w.Write(raw)
	if err := w.Flush(); err != nil {
		return res, true, err
	}
	code, msg, err := t.ReadResponse(250)
	var te *textproto.Error
	switch {
	case err == nil:
		return SendResult{ProviderID: ProviderID(msg), Reply: fmt.Sprintf("%d %s", code, msg)}, true, nil
	case errors.As(err, &te):
		return res, true, &RejectError{Code: te.Code, Stage: StageData, Reply: fmt.Sprintf("%d %s", te.Code, te.Msg)}
	default:
		return res, true, err
	}
}

// rejection turns a server's answer into a *RejectError; other errors pass through.
func rejection(err error, stage Stage) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return err
	}
	reply := fmt.Sprintf("%d %s", se.Code, se.Message)
	if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		reply = fmt.Sprintf("%d %d.%d.%d %s", se.Code, ec[0], ec[1], ec[2], se.Message)
	}
	return &RejectError{Code: se.Code, Stage: stage, Reply: reply}
}

// reset readies a connection for the next transaction after a refusal.
func (s *SMTPSender) reset(pc *smtpConn) bool {
	_ = pc.conn.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
	defer pc.conn.SetDeadline(time.Time{}) //nolint:errcheck
	return pc.c.Reset() == nil
}

// get returns an idle connection (pooled true) or opens one when fewer than MaxConns are open.
func (s *SMTPSender) get(ctx context.Context) (*smtpConn, bool, error) {
	for {
		if s.closed.Load() {
			return nil, false, errors.New("delivery: SMTP sender closed")
		}
		select {
		case pc := <-s.idle:
			if s.now().Sub(pc.idleAt) < s.cfg.IdleTimeout {
				return pc, true, nil
			}
			s.discard(pc)
			continue
		default:
		}
		select {
		case pc := <-s.idle:
			if s.now().Sub(pc.idleAt) < s.cfg.IdleTimeout {
				return pc, true, nil
			}
			s.discard(pc)
		case s.slots <- struct{}{}:
			pc, err := s.dial(ctx)
			if err != nil {
				<-s.slots
				return nil, false, err
			}
			return pc, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-s.done:
		}
	}
}

// put returns a connection to the pool, or closes it when it carried MessagesPerConn messages
// or the sender is closed.
func (s *SMTPSender) put(pc *smtpConn) {
	if pc.messages >= s.cfg.MessagesPerConn || s.closed.Load() {
		s.quit(pc)
		return
	}
	pc.idleAt = s.now()
	s.idle <- pc // never blocks: at most MaxConns connections exist
	if s.closed.Load() {
		s.drain()
	}
}

// quit ends a connection politely.
func (s *SMTPSender) quit(pc *smtpConn) {
	_ = pc.conn.SetDeadline(time.Now().Add(time.Second))
	_ = pc.c.Quit()
	s.discard(pc)
}

// discard closes a connection and frees its slot.
func (s *SMTPSender) discard(pc *smtpConn) {
	_ = pc.c.Close()
	<-s.slots
}

// Close closes the idle connections; connections in use close when their message is done.
func (s *SMTPSender) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		close(s.done)
	}
	s.drain()
	return nil
}

func (s *SMTPSender) drain() {
	for {
		select {
		case pc := <-s.idle:
			s.quit(pc)
		default:
			return
		}
	}
}

// dial opens, greets, secures and authenticates one connection.
func (s *SMTPSender) dial(ctx context.Context) (*smtpConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	pc, err := s.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: %w", s.addr, err)
	}
	s.dials.Add(1)
	return pc, nil
}

func (s *SMTPSender) open(ctx context.Context) (*smtpConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	// Until the connection is ready, ctx bounds every step (TLS, EHLO, AUTH).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*smtpConn, error) {
		conn.Close()
		return nil, err
	}
	var c *smtp.Client
	secure, greeted := s.implicitTLS, false
	switch {
	case s.implicitTLS:
		tc := tls.Client(conn, s.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("TLS: %w", err))
		}
		conn, c = tc, smtp.NewClient(tc)
	case s.cfg.TLS == TLSOff || (s.cfg.TLS == TLSAuto && s.starttls.Load() == starttlsAbsent):
		c = smtp.NewClient(conn)
	case s.cfg.TLS == TLSAuto && s.starttls.Load() == starttlsUnknown:
		// Learn once whether the server offers STARTTLS; go-smtp starts TLS only on a fresh
		// client, so a server that offers it gets a second connection.
		c = smtp.NewClient(conn)
		if err := c.Hello(s.cfg.HelloName); err != nil {
			return fail(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			greeted = true
			s.starttls.Store(starttlsAbsent)
			if !isLoopbackHost(s.host) {
				s.cfg.Logger.Warn("SMTP server offers no STARTTLS: sending in plain text (--smtp-tls starttls refuses that)", "server", s.addr)
			}
			break
		}
		s.starttls.Store(starttlsOffered)
		_ = c.Quit()
		conn.Close()
		return s.open(ctx)
	default:
		c, err = smtp.NewClientStartTLS(conn, s.tlsConfig)
		if err != nil {
			return fail(fmt.Errorf("STARTTLS: %w", err))
		}
		secure = true
	}
	c.CommandTimeout, c.SubmissionTimeout = s.cfg.CommandTimeout, s.cfg.CommandTimeout
	if !greeted {
		if err := c.Hello(s.cfg.HelloName); err != nil {
			return fail(err)
		}
	}
	if s.cfg.Username != "" {
		if !secure && !isLoopbackHost(s.host) {
			return fail(errors.New("AUTH over plain text to a server beyond loopback: use smtps:// or STARTTLS (--smtp-tls starttls)"))
		}
		if !c.SupportsAuth(sasl.Plain) {
			return fail(errors.New("the server offers no AUTH PLAIN"))
		}
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			return fail(fmt.Errorf("AUTH PLAIN as %q: %w", s.cfg.Username, err))
		}
	}
	if !stop() {
		return fail(ctx.Err()) // the deadline was already cut short
	}
	pc := &smtpConn{c: c, conn: conn}
	pipelining, _ := c.Extension("PIPELINING")
	chunking, _ := c.Extension("CHUNKING")
	if pipelining && chunking && (!secure || s.implicitTLS) {
		// A write buffer that holds a whole typical message: one write per transaction.
		pc.fast = &textproto.Conn{Reader: *textproto.NewReader(bufio.NewReader(conn)), Writer: *textproto.NewWriter(bufio.NewWriterSize(conn, 32<<10))}
		pc.size, _ = c.Extension("SIZE")
	}
	return pc, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
