package delivery

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	mtextproto "github.com/emersion/go-message/textproto"
)

// MIME defaults and limits.
const (
	// FeedbackSenderDefault is the last field of Feedback-ID when MIMEConfig names none.
	FeedbackSenderDefault = "tailor"
	// MaxMessageBytesDefault bounds a built message (10 MiB, what most providers take).
	MaxMessageBytesDefault = 10 << 20
	// MaxHeaderValueBytes bounds one header value (a subject, a name, a List-Unsubscribe).
	MaxHeaderValueBytes = 4096
	// maxHeaderWord bounds a run without white space in a header value: longer, it could not
	// be folded under the 998-octet line limit of RFC 5322.
	maxHeaderWord = 900
)

// ErrInvalidMessage is wrapped by every *MessageError: the message cannot be built as it is,
// so retrying it will not help.
var ErrInvalidMessage = errors.New("message cannot be built")

// MessageError says which part of a message cannot be built and why.
type MessageError struct {
	MessageID int64
	Field     string // "email", "subject", "headers[X-Foo]", "body", ...
	Reason    string
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("message %d: %s: %s", e.MessageID, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidMessage) true.
func (e *MessageError) Unwrap() error { return ErrInvalidMessage }

// MIMEConfig configures a MIMEBuilder. Zero values mean the defaults.
type MIMEConfig struct {
	// From is the From header, e.g. "Example Shop <news@shop.example>". Required.
	From string
	// ReplyTo is the Reply-To header; default none.
	ReplyTo string
	// ListDomain ends List-Id, "<campaign-7.ListDomain>"; default From's domain.
	ListDomain string
	// MessageIDDomain ends every Message-ID; default From's domain.
	MessageIDDomain string
	// FeedbackSender is Feedback-ID's sender field; default FeedbackSenderDefault.
	FeedbackSender string
	// MaxMessageBytes bounds a built message; default MaxMessageBytesDefault (10 MiB).
	MaxMessageBytes int
	// Now dates messages; default time.Now.
	Now func() time.Time
	// Rand makes Message-IDs and multipart boundaries unique; default crypto/rand. A fixed
	// reader makes the output reproducible (golden files).
	Rand io.Reader
}

func (c MIMEConfig) withDefaults() MIMEConfig {
	c.FeedbackSender = cmp.Or(c.FeedbackSender, FeedbackSenderDefault)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, MaxMessageBytesDefault)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return c
}

// domainRE accepts a DNS name: what may follow "@" or end a List-Id.
var domainRE = regexp.MustCompile(`^(?i)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$`)

// feedbackRE: Feedback-ID fields are joined with colons, so a field holds none.
var feedbackRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// MIMEBuilder builds RFC 5322 messages. Build is safe for concurrent use when Now and Rand are.
type MIMEBuilder struct {
	cfg      MIMEConfig
	from     *mail.Address
	replyTo  *mail.Address
	envelope string // From's bare address: the default SMTP envelope sender
	// fromField and replyToField are the From and Reply-To values, encoded once.
	fromField, replyToField string
}

// NewMIMEBuilder checks cfg and returns a builder.
func NewMIMEBuilder(cfg MIMEConfig) (*MIMEBuilder, error) {
	cfg = cfg.withDefaults()
	from, err := parseConfigAddress("From", cfg.From)
	if err != nil {
		return nil, err
	}
	b := &MIMEBuilder{cfg: cfg, from: from, envelope: from.Address, fromField: from.String()}
	if cfg.ReplyTo != "" {
		if b.replyTo, err = parseConfigAddress("ReplyTo", cfg.ReplyTo); err != nil {
			return nil, err
		}
		b.replyToField = b.replyTo.String()
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	b.cfg.ListDomain = cmp.Or(cfg.ListDomain, domain)
	b.cfg.MessageIDDomain = cmp.Or(cfg.MessageIDDomain, domain)
	for _, d := range []struct{ name, v string }{{"ListDomain", b.cfg.ListDomain}, {"MessageIDDomain", b.cfg.MessageIDDomain}} {
		if !domainRE.MatchString(d.v) {
			return nil, fmt.Errorf("delivery: MIMEConfig.%s %q: want a domain name such as lists.shop.example", d.name, d.v)
		}
	}
	if !feedbackRE.MatchString(b.cfg.FeedbackSender) {
		return nil, fmt.Errorf("delivery: MIMEConfig.FeedbackSender %q: want 1 to 64 letters, digits, '.', '_' or '-'", b.cfg.FeedbackSender)
	}
	if b.cfg.MaxMessageBytes < 0 {
		return nil, errors.New("delivery: MIMEConfig.MaxMessageBytes must not be negative")
	}
	return b, nil
}

func parseConfigAddress(field, v string) (*mail.Address, error) {
	a, err := mail.ParseAddress(v)
	if err == nil {
		err = checkAddress(a.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("delivery: MIMEConfig.%s %q: %v (want e.g. \"Example Shop <news@shop.example>\")", field, v, err)
	}
	a.Name = headerText(a.Name)
	return a, nil
}

// EnvelopeFrom is the address the From header names: the SMTP envelope sender (MAIL FROM)
// unless the sender is told another bounce address.
func (b *MIMEBuilder) EnvelopeFrom() string { return b.envelope }

// The headers Build sets itself; a rendered message's Headers may not set them.
var builtHeaders = []string{
	"From", "Reply-To", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Id", "Feedback-Id", "X-Tailor-Campaign", "X-Tailor-Message",
}

// Build returns m as an RFC 5322 message: headers From, Reply-To (when configured), To (with
// the recipient's name), Subject, Date, Message-ID, MIME-Version, List-Id, Feedback-ID,
// X-Tailor-Campaign, X-Tailor-Message and m.Headers (List-Unsubscribe, List-Unsubscribe-Post;
// names starting List- or X-, or Precedence, Auto-Submitted), then a multipart/alternative
// body of m.Text and m.HTML (a single part when one is empty), UTF-8 and quoted-printable.
// The preheader becomes hidden text at the top of the HTML part.
//
// Control characters (CR and LF included) and line separators in the recipient's name, the
// subject and every header value are replaced with spaces, so profile data can never add a
// header or a body line. An address that is not a plain ASCII addr-spec, a header name it
// may not set, a value too long to fold, an empty or oversized message: a *MessageError
// (ErrInvalidMessage).
func (b *MIMEBuilder) Build(m Message) ([]byte, error) { return b.AppendBuild(nil, m) }

// AppendBuild is Build appending the message to dst (which may be a buffer used before,
// dst[:0]), so that a sender that builds message after message reuses one buffer each.
func (b *MIMEBuilder) AppendBuild(dst []byte, m Message) ([]byte, error) {
	bad := func(field, format string, args ...any) error {
		return &MessageError{MessageID: m.ID, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if err := checkAddress(m.Email); err != nil {
		return nil, bad("email", "%v", err)
	}
	if m.HTML == "" && m.Text == "" {
		return nil, bad("body", "both the HTML and the text part are empty")
	}
	if n := len(m.HTML) + len(m.Text); n > b.cfg.MaxMessageBytes {
		return nil, bad("body", "%d bytes, more than the %d a message may have", n, b.cfg.MaxMessageBytes)
	}

	// go-message writes header fields in the reverse order of Add: add the last first.
	var h gomail.Header
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var extra [][2]string
	for _, k := range keys {
		name, err := extraHeaderName(k)
		if err != nil {
			return nil, bad("headers["+headerText(k)+"]", "%v", err)
		}
		extra = append(extra, [2]string{name, m.Headers[k]})
	}
	fields := [][2]string{
		{"From", b.fromField},
	}
	if b.replyTo != nil {
		fields = append(fields, [2]string{"Reply-To", b.replyToField})
	}
	to := &mail.Address{Name: headerText(m.Name), Address: m.Email}
	token, err := b.token(20)
	if err != nil {
		return nil, err
	}
	fields = append(fields,
		[2]string{"To", addressHeader(to)},
		[2]string{"Subject", encodeText(headerText(m.Subject))},
		[2]string{"Date", b.cfg.Now().Format(time.RFC1123Z)},
		[2]string{"Message-Id", fmt.Sprintf("<tailor.%d.%d.%s@%s>", m.CampaignID, m.ID, token, b.cfg.MessageIDDomain)},
		[2]string{"List-Id", fmt.Sprintf("<campaign-%d.%s>", m.CampaignID, b.cfg.ListDomain)},
		[2]string{"Feedback-Id", fmt.Sprintf("%d:campaign:%s", m.CampaignID, b.cfg.FeedbackSender)},
		[2]string{"X-Tailor-Campaign", strconv.FormatInt(m.CampaignID, 10)},
		[2]string{"X-Tailor-Message", strconv.FormatInt(m.ID, 10)},
	)
	for _, f := range extra {
		fields = append(fields, [2]string{f[0], encodeText(headerText(f[1]))})
	}
	for _, f := range fields {
		if len(f[1]) > MaxHeaderValueBytes {
			return nil, bad(f[0], "%d bytes, more than the %d a header value may have", len(f[1]), MaxHeaderValueBytes)
		}
		if w := longestWord(f[1]); w > maxHeaderWord {
			return nil, bad(f[0], "a run of %d characters without a space is too long to fold into a header line", w)
		}
	}
	var parts []partSpec
	if m.Text != "" {
		parts = append(parts, partSpec{"text/plain", []string{m.Text}})
	}
	if m.HTML != "" {
		parts = append(parts, partSpec{"text/html", withPreheader(m.HTML, headerText(m.Preheader))})
	}
	if len(parts) == 1 {
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		h.SetContentType(parts[0].mediaType, map[string]string{"charset": "utf-8"})
	} else {
		boundary, err := b.boundary()
		if err != nil {
			return nil, err
		}
		h.SetContentType("multipart/alternative", map[string]string{"boundary": boundary})
	}
	h.Set("MIME-Version", "1.0")
	for i := len(fields) - 1; i >= 0; i-- {
		h.Add(fields[i][0], fields[i][1])
	}

	// Quoted-printable makes UTF-8 text about a quarter longer (=XX escapes, soft line
	// breaks, CRLF): room for that and the headers, so the buffer grows once.
	buf := bytes.NewBuffer(dst)
	buf.Grow((len(m.HTML)+len(m.Text))*5/4 + 4096)
	if err := writeEntity(buf, h.Header, parts); err != nil {
		return nil, fmt.Errorf("build message %d: %w", m.ID, err)
	}
	if n := buf.Len() - len(dst); n > b.cfg.MaxMessageBytes {
		return nil, bad("body", "%d bytes encoded, more than the %d a message may have", n, b.cfg.MaxMessageBytes)
	}
	return buf.Bytes(), nil
}

// partHeaders are the parts' headers (Content-Type with the UTF-8 charset, quoted-printable),
// formatted by go-message once and read back, so that writing them copies their raw bytes
// instead of formatting two fields per part and message. WriteHeader only reads a header, so
// the relay's goroutines share them.
var partHeaders = func() map[string]mtextproto.Header {
	out := map[string]mtextproto.Header{}
	for _, mt := range []string{"text/plain", "text/html"} {
		var h message.Header
		h.SetContentType(mt, map[string]string{"charset": "utf-8"})
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		var buf bytes.Buffer
		if err := mtextproto.WriteHeader(&buf, h.Header); err != nil {
			panic(err) // constant input
		}
		parsed, err := mtextproto.ReadHeader(bufio.NewReader(&buf))
		if err != nil {
			panic(err)
		}
		out[mt] = parsed
	}
	return out
}()

func partHeader(mediaType string) mtextproto.Header { return partHeaders[mediaType] }

// partSpec is a part's media type and its body, in pieces written one after the other.
type partSpec struct {
	mediaType string
	body      []string
}

// writeEntity writes the header and either the single part's body or each part, as
// go-message's Writer lays them out (its textproto writes every header and the multipart
// frame), with the bodies quoted-printable through qpEncoder, which writes the same bytes as
// the standard library's encoder go-message uses, several times faster.
func writeEntity(buf *bytes.Buffer, h message.Header, parts []partSpec) error {
	if err := mtextproto.WriteHeader(buf, h.Header); err != nil {
		return err
	}
	// A part's writer writes to buf as well: the body is encoded into buf's spare room and
	// written from there, which copies nothing when the room sufficed (Build grows buf for that).
	body := func(w io.Writer, pieces []string) error {
		var e qpEncoder
		dst := buf.AvailableBuffer()
		for _, p := range pieces {
			dst = e.append(dst, p)
		}
		_, err := w.Write(e.close(dst))
		return err
	}
	if len(parts) == 1 {
		return body(buf, parts[0].body)
	}
	_, params, err := h.ContentType()
	if err != nil {
		return err
	}
	mw := mtextproto.NewMultipartWriter(buf)
	if err := mw.SetBoundary(params["boundary"]); err != nil {
		return err
	}
	for _, p := range parts {
		pw, err := mw.CreatePart(partHeader(p.mediaType))
		if err != nil {
			return err
		}
		if err := body(pw, p.body); err != nil {
			return err
		}
	}
	return mw.Close()
}

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// token returns n random base32 characters (lower case) from cfg.Rand.
func (b *MIMEBuilder) token(n int) (string, error) {
	raw := make([]byte, (n*5+7)/8)
	if _, err := io.ReadFull(b.cfg.Rand, raw); err != nil {
		return "", fmt.Errorf("delivery: read random bytes: %w", err)
	}
	return strings.ToLower(tokenEncoding.EncodeToString(raw))[:n], nil
}

// boundary returns a multipart boundary that no part can contain: it starts "=_", and in
// quoted-printable an "=" is always followed by two hex digits or a line break (the parts are
// always quoted-printable), so no body line can begin with "--=_" and end a part early.
func (b *MIMEBuilder) boundary() (string, error) {
	t, err := b.token(24)
	if err != nil {
		return "", err
	}
	return "=_tailor-" + t, nil
}

// checkAddress accepts a plain ASCII addr-spec ("a@b.example"), the only form an envelope
// takes without SMTPUTF8.
func checkAddress(addr string) error {
	if addr == "" {
		return errors.New("no address")
	}
	if len(addr) > 254 {
		return fmt.Errorf("%d characters, more than the 254 an address may have", len(addr))
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%q: only printable ASCII without spaces (internationalised addresses are not supported)", addr)
		}
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" {
		return fmt.Errorf("%q is not a plain address like name@example.com", addr)
	}
	if !domainRE.MatchString(addr[strings.LastIndexByte(addr, '@')+1:]) {
		return fmt.Errorf("%q: the domain is not a DNS name", addr)
	}
	return nil
}

// extraHeaderName checks a header name a rendered message asks for and returns it canonical.
func extraHeaderName(k string) (string, error) {
	if k == "" || len(k) > 76 {
		return "", errors.New("a header name has 1 to 76 characters")
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return "", fmt.Errorf("header name %q: only printable ASCII without spaces or colons", k)
		}
	}
	name := textproto.CanonicalMIMEHeaderKey(k) // the form go-message writes
	if slices.Contains(builtHeaders, name) || strings.HasPrefix(name, "X-Tailor-") {
		return "", fmt.Errorf("header %s is set by the builder", name)
	}
	if !strings.HasPrefix(name, "List-") && !strings.HasPrefix(name, "X-") && name != "Precedence" && name != "Auto-Submitted" {
		return "", fmt.Errorf("header %s may not be set by a template (List-*, X-*, Precedence and Auto-Submitted may)", name)
	}
	return name, nil
}

// headerText makes s safe as one header line's text: invalid UTF-8 becomes U+FFFD, every
// control character (C0 including CR, LF and TAB, DEL, C1) and the Unicode line and paragraph
// separators become a space, and runs of spaces become one (readers unfold header lines into
// single spaces anyway), without leading or trailing ones. Other white space, such as the
// no-break space of "19,99 €", stays.
func headerText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r == ' ' || unsafeInHeader(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeInHeader(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}

// encodeText encodes unstructured header text (RFC 2047) when it needs it: non-ASCII text as
// Q encoded-words, and ASCII text that looks like an encoded-word ("=?") as B encoded-words,
// so that a reader decodes exactly the text that was meant.
func encodeText(s string) string {
	if strings.Contains(s, "=?") {
		return forceB(s)
	}
	return mime.QEncoding.Encode("utf-8", s)
}

// forceB encodes s as B encoded-words of at most 75 characters, split at rune boundaries.
// addressHeader is a.String(), except for a non-ASCII name with a backslash: net/mail
// Q-encodes that one with the backslash bare, which no parser takes (net/mail's own refuses
// the whole To field; FuzzBuildMIME found it), so it is B-encoded instead.
func addressHeader(a *mail.Address) string {
	if strings.Contains(a.Name, "\\") && strings.ContainsFunc(a.Name, func(r rune) bool { return r >= utf8.RuneSelf }) {
		return forceB(a.Name) + " <" + a.Address + ">"
	}
	return a.String()
}

func forceB(s string) string {
	const maxChunk = 45 // 60 base64 characters + "=?utf-8?b?" + "?=" = 72
	var out []string
	for len(s) > 0 {
		n := min(len(s), maxChunk)
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		out = append(out, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(out, " ")
}

// longestWord is the length in bytes of s's longest run without white space (the longest of
// strings.Fields(s), without allocating them).
func longestWord(s string) int {
	longest, start := 0, 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if unicode.IsSpace(r) {
			start = i
		} else {
			longest = max(longest, i-start)
		}
	}
	return longest
}

// bodyTagEnd returns the index just after the first body start tag of s (what the regular
// expression `(?i)<body\b[^>]*>` matches), or -1. A hand-written scan: the regular
// expression was 3 % of the relay's CPU.
func bodyTagEnd(s string) int {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			return -1
		}
		i += j + 1
		if len(s)-i < 4 || !strings.EqualFold(s[i:i+4], "body") {
			continue
		}
		if k := i + 4; k < len(s) && isWordByte(s[k]) {
			continue // <bodyx is another tag
		}
		if end := strings.IndexByte(s[i+4:], '>'); end >= 0 {
			return i + 4 + end + 1
		}
		return -1 // no '>' after this or any later "<body"
	}
}

// isWordByte: what \b of Go's regexp counts as a word character.
func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// withPreheader puts the preheader at the top of the HTML body, hidden, where inbox previews
// show it (HTML without a body tag gets it first), as pieces that do not copy the HTML.
func withPreheader(htmlBody, preheader string) []string {
	if preheader == "" {
		return []string{htmlBody}
	}
	hidden := `<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;">` + html.EscapeString(preheader) + `</div>`
	if end := bodyTagEnd(htmlBody); end >= 0 {
		return []string{htmlBody[:end], "\n", hidden, htmlBody[end:]}
	}
	return []string{hidden, "\n", htmlBody}
}
