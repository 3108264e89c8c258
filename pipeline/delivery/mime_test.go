package delivery_test

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// reproducible returns a builder whose output depends only on its input: a fixed clock and a
// seeded random source.
func reproducible(t testing.TB, cfg delivery.MIMEConfig) *delivery.MIMEBuilder {
	t.Helper()
	cfg.From = cmp(cfg.From, `Example Shop <news@shop.example>`)
	cfg.Now = func() time.Time { return time.Date(2026, 11, 22, 9, 30, 0, 0, time.FixedZone("CET", 3600)) }
	cfg.Rand = rand.NewChaCha8([32]byte{1, 2, 3})
	b, err := delivery.NewMIMEBuilder(cfg)
	require.NoError(t, err)
	return b
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sampleMessage() delivery.Message {
	return delivery.Message{
		ID: 4711, CampaignID: 42, CustomerID: "c-1042",
		Email: "zoe@example.com", Name: "Zoë Ångström-Núñez",
		Subject:   "Zoë, ton panier t'attend — 19,99\u00a0€ de réduction",
		Preheader: "Nos nouveautés <pour> toi",
		HTML:      "<!DOCTYPE html>\n<html><body style=\"margin:0\">\n<p>Bonjour Zoë,</p>\n<p>Une ligne très longue qui dépasse largement les soixante-seize caractères d'une ligne quoted-printable.</p>\n</body></html>\n",
		Text:      "Bonjour Zoë,\n\nUne ligne très longue qui dépasse largement les soixante-seize caractères d'une ligne quoted-printable.\n",
		Headers: map[string]string{
			"List-Unsubscribe":      "<https://tailor.example/unsubscribe/tok123>",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		},
	}
}

// parsed is a built message read back with the standard library only.
type parsed struct {
	msg    *mail.Message
	header string            // the raw header section
	parts  map[string]string // media type -> decoded body
}

func parseMIME(t testing.TB, raw []byte) parsed {
	t.Helper()
	head, _, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	require.True(t, ok, "a header section ends with an empty line")
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	p := parsed{msg: msg, header: string(head), parts: map[string]string{}}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	if mediaType != "multipart/alternative" {
		p.parts[mediaType] = decodeBody(t, msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		// NextRawPart: the test decodes quoted-printable itself, to see the wire form too.
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		pt, pp, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		require.NoError(t, err)
		require.Equal(t, "utf-8", pp["charset"])
		p.parts[pt] = decodeBody(t, part.Header.Get("Content-Transfer-Encoding"), part)
	}
	return p
}

func decodeBody(t testing.TB, cte string, r io.Reader) string {
	t.Helper()
	require.Equal(t, "quoted-printable", cte)
	b, err := io.ReadAll(quotedprintable.NewReader(r))
	require.NoError(t, err)
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// decoded returns a header field's text with RFC 2047 words decoded.
func (p parsed) decoded(t testing.TB, name string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(p.msg.Header.Get(name))
	require.NoError(t, err, name)
	return s
}

// fieldNames lists the header section's field names in order, and checks every other line
// continues a field (starts with white space) and no line is longer than RFC 5322 allows.
func (p parsed) fieldNames(t testing.TB) []string {
	t.Helper()
	var names []string
	sc := bufio.NewScanner(strings.NewReader(p.header))
	for sc.Scan() {
		line := sc.Text()
		require.LessOrEqual(t, len(line), 998, "line %q", line)
		require.NotContains(t, line, "\r", "no bare CR")
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			require.NotEmpty(t, names, "a continuation line first")
			continue
		}
		name, _, ok := strings.Cut(line, ":")
		require.True(t, ok, "line %q is neither a field nor a continuation", line)
		names = append(names, name)
	}
	return names
}

var wantFields = []string{
	"From", "To", "Subject", "Date", "Message-Id", "List-Id", "Feedback-Id", "X-Tailor-Campaign",
	"X-Tailor-Message", "List-Unsubscribe", "List-Unsubscribe-Post", "Mime-Version", "Content-Type",
}

func TestBuild_MatchesGoldenFile(t *testing.T) {
	t.Parallel()
	raw, err := reproducible(t, delivery.MIMEConfig{ReplyTo: "Support <help@shop.example>"}).Build(sampleMessage())
	require.NoError(t, err)
	golden := filepath.Join("testdata", "message.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, raw, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), string(raw), "run go test ./pipeline/delivery -run Golden -update after a deliberate change")
}

func TestBuild_ParsesWithTheStandardLibraryAndRoundTripsNonASCII(t *testing.T) {
	t.Parallel()
	m := sampleMessage()
	raw, err := reproducible(t, delivery.MIMEConfig{}).Build(m)
	require.NoError(t, err)
	require.NotContains(t, strings.ReplaceAll(string(raw), "\r\n", ""), "\n", "every line ends in CRLF")
	p := parseMIME(t, raw)
	require.Equal(t, wantFields, p.fieldNames(t))

	to, err := p.msg.Header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: m.Name, Address: m.Email}}, to)
	from, err := p.msg.Header.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Example Shop", Address: "news@shop.example"}}, from)
	require.Equal(t, m.Subject, p.decoded(t, "Subject"))
	require.Contains(t, p.msg.Header.Get("Subject"), "=?utf-8?q?", "encoded with RFC 2047")
	date, err := p.msg.Header.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(time.Date(2026, 11, 22, 8, 30, 0, 0, time.UTC)), date)
	require.Regexp(t, `^<tailor\.42\.4711\.[a-z2-7]{20}@shop\.example>$`, p.msg.Header.Get("Message-Id"))
	require.Equal(t, "<campaign-42.shop.example>", p.msg.Header.Get("List-Id"))
	require.Equal(t, "42:campaign:tailor", p.msg.Header.Get("Feedback-Id"))
	require.Equal(t, "42", p.msg.Header.Get("X-Tailor-Campaign"))
	require.Equal(t, "4711", p.msg.Header.Get("X-Tailor-Message"))
	require.Equal(t, m.Headers["List-Unsubscribe"], p.msg.Header.Get("List-Unsubscribe"))
	require.Equal(t, "List-Unsubscribe=One-Click", p.msg.Header.Get("List-Unsubscribe-Post"))
	require.Empty(t, p.msg.Header.Get("Reply-To"), "none configured")

	require.Equal(t, m.Text, p.parts["text/plain"])
	require.Equal(t, strings.Replace(m.HTML, "<body style=\"margin:0\">",
		"<body style=\"margin:0\">\n<div style=\"display:none;max-height:0;overflow:hidden;mso-hide:all;\">Nos nouveautés &lt;pour&gt; toi</div>", 1),
		p.parts["text/html"], "the preheader, escaped and hidden, opens the body")
	require.Len(t, p.parts, 2)

	// Two builds of one message differ only in Date, Message-ID and boundary: never reused.
	b := reproducible(t, delivery.MIMEConfig{})
	one, err := b.Build(m)
	require.NoError(t, err)
	two, err := b.Build(m)
	require.NoError(t, err)
	require.NotEqual(t, parseMIME(t, one).msg.Header.Get("Message-Id"), parseMIME(t, two).msg.Header.Get("Message-Id"))
}

func TestBuild_OnePartWhenTheOtherIsEmpty(t *testing.T) {
	t.Parallel()
	m := sampleMessage()
	m.HTML = ""
	raw, err := reproducible(t, delivery.MIMEConfig{}).Build(m)
	require.NoError(t, err)
	p := parseMIME(t, raw)
	require.Equal(t, map[string]string{"text/plain": m.Text}, p.parts)

	m = sampleMessage()
	m.Text = ""
	raw, err = reproducible(t, delivery.MIMEConfig{}).Build(m)
	require.NoError(t, err)
	p = parseMIME(t, raw)
	require.Contains(t, p.parts["text/html"], "<p>Bonjour Zoë,</p>")
	require.Len(t, p.parts, 1)
}

// Profile data (names, subjects) and rendered header values can never add a header field:
// whatever they hold, the message has exactly the fields the builder writes.
func TestBuild_NeutralisesHostileHeaderInput(t *testing.T) {
	t.Parallel()
	hostile := []string{
		"Eve\r\nBcc: victim@example.org",
		"Eve\nBcc: victim@example.org",
		"Eve\rBcc: victim@example.org",
		"\r\n\r\n<p>body injection</p>",
		"Eve\x00\x07\x1b[31m\x7f",
		"Eve\u0085Bcc: x@example.org\u2028Cc: y@example.org\u2029",
		"Eve\tTab",
		"Eve\xff\xfeinvalid",
		"=?utf-8?q?Eve=0D=0ABcc:_victim@example.org?=",
		"Zoë\r\n Ångström", // a folded continuation with non-ASCII text
		`"Eve" <eve@evil.example>, mallory@evil.example`,
		strings.Repeat("a\r\n", 300),
	}
	b := reproducible(t, delivery.MIMEConfig{})
	for _, s := range hostile {
		m := sampleMessage()
		m.Name, m.Subject, m.Preheader = s, s, s
		m.Headers = map[string]string{"List-Unsubscribe": "<https://x.example/u>" + s, "X-Campaign-Note": s}
		raw, err := b.Build(m)
		require.NoError(t, err, "%q", s)
		p := parseMIME(t, raw)
		want := append(slices.DeleteFunc(slices.Clone(wantFields), func(f string) bool { return f == "List-Unsubscribe-Post" }), "X-Campaign-Note")
		require.ElementsMatch(t, want, p.fieldNames(t), "%q", s)
		require.Empty(t, p.msg.Header.Get("Bcc"), "%q", s)
		require.Empty(t, p.msg.Header.Get("Cc"), "%q", s)

		to, err := p.msg.Header.AddressList("To")
		require.NoError(t, err, "%q", s)
		require.Len(t, to, 1, "one recipient, whatever the name says: %q", s)
		require.Equal(t, m.Email, to[0].Address)
		for _, text := range []string{to[0].Name, p.decoded(t, "Subject"), p.decoded(t, "X-Campaign-Note")} {
			require.NotContains(t, text, "\r", "%q", s)
			require.NotContains(t, text, "\n", "%q", s)
			require.NotContains(t, text, "\x00", "%q", s)
		}
		require.Equal(t, p.decoded(t, "Subject"), to[0].Name, "name and subject are cleaned alike: %q", s)
		require.NotContains(t, p.parts["text/html"], "<p>body injection</p>", "the preheader is escaped")
	}
	// The cleaning keeps the text: only the dangerous characters become spaces.
	m := sampleMessage()
	m.Subject = "Eve\r\nBcc: victim@example.org"
	raw, err := b.Build(m)
	require.NoError(t, err)
	require.Equal(t, "Eve Bcc: victim@example.org", parseMIME(t, raw).decoded(t, "Subject"))
}

func TestBuild_RefusesWhatItCannotBuild(t *testing.T) {
	t.Parallel()
	b := reproducible(t, delivery.MIMEConfig{MaxMessageBytes: 64 << 10})
	for _, tc := range []struct {
		edit  func(*delivery.Message)
		field string
		want  string
	}{
		{func(m *delivery.Message) { m.Email = "" }, "email", "no address"},
		{func(m *delivery.Message) { m.Email = "a@example.com\r\nBcc: x@example.com" }, "email", "only printable ASCII"},
		{func(m *delivery.Message) { m.Email = "Zoë <zoe@example.com>" }, "email", "only printable ASCII"},
		{func(m *delivery.Message) { m.Email = "Zoe<zoe@example.com>" }, "email", "not a plain address"},
		{func(m *delivery.Message) { m.Email = "zoë@example.com" }, "email", "internationalised"},
		{func(m *delivery.Message) { m.Email = "zoe@exa_mple.com" }, "email", "not a DNS name"},
		{func(m *delivery.Message) { m.Email = "a,b@example.com" }, "email", "not a plain address"},
		{func(m *delivery.Message) { m.HTML, m.Text = "", "" }, "body", "both the HTML and the text part are empty"},
		{func(m *delivery.Message) { m.HTML = strings.Repeat("x", 65<<10) }, "body", "more than the 65536"},
		{func(m *delivery.Message) { m.HTML = strings.Repeat("é", 20<<10) }, "body", "encoded, more than"},
		{func(m *delivery.Message) { m.Subject = strings.Repeat("x ", 3000) }, "Subject", "more than the 4096"},
		{func(m *delivery.Message) { m.Subject = strings.Repeat("x", 1000) }, "Subject", "too long to fold"},
		{func(m *delivery.Message) { m.Headers = map[string]string{"Bcc": "x@example.com"} }, "headers[Bcc]", "may not be set by a template"},
		{func(m *delivery.Message) { m.Headers = map[string]string{"from": "x@example.com"} }, "headers[from]", "header From is set by the builder"},
		{func(m *delivery.Message) { m.Headers = map[string]string{"X-Tailor-Message": "1"} }, "headers[X-Tailor-Message]", "set by the builder"},
		{func(m *delivery.Message) { m.Headers = map[string]string{"X-Bad Name": "1"} }, "headers[X-Bad Name]", "without spaces or colons"},
		{func(m *delivery.Message) { m.Headers = map[string]string{"X-A\r\nBcc": "1"} }, "headers[X-A Bcc]", "without spaces or colons"},
		{func(m *delivery.Message) { m.Headers = map[string]string{"": "1"} }, "headers[]", "1 to 76 characters"},
	} {
		m := sampleMessage()
		tc.edit(&m)
		_, err := b.Build(m)
		require.ErrorIs(t, err, delivery.ErrInvalidMessage, tc.want)
		var me *delivery.MessageError
		require.ErrorAs(t, err, &me)
		require.Equal(t, tc.field, me.Field, tc.want)
		require.Equal(t, m.ID, me.MessageID)
		require.Contains(t, err.Error(), tc.want)
	}
}

func TestNewMIMEBuilder_ChecksItsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  delivery.MIMEConfig
		want string
	}{
		{delivery.MIMEConfig{}, "MIMEConfig.From"},
		{delivery.MIMEConfig{From: "not an address"}, "MIMEConfig.From"},
		{delivery.MIMEConfig{From: "Shop <news@shop.example>, other@shop.example"}, "MIMEConfig.From"},
		{delivery.MIMEConfig{From: "news@shop.example", ReplyTo: "help"}, "MIMEConfig.ReplyTo"},
		{delivery.MIMEConfig{From: "news@shop.example", ListDomain: "bad domain"}, "MIMEConfig.ListDomain"},
		{delivery.MIMEConfig{From: "news@shop.example", MessageIDDomain: "a>b"}, "MIMEConfig.MessageIDDomain"},
		{delivery.MIMEConfig{From: "news@shop.example", FeedbackSender: "a:b"}, "MIMEConfig.FeedbackSender"},
		{delivery.MIMEConfig{From: "news@shop.example", MaxMessageBytes: -1}, "MaxMessageBytes"},
	} {
		_, err := delivery.NewMIMEBuilder(tc.cfg)
		require.ErrorContains(t, err, tc.want, "%+v", tc.cfg)
	}
	// A From with a line break does not parse as an address; one with a quoted break parses,
	// and the break is cleaned like any header text.
	_, err := delivery.NewMIMEBuilder(delivery.MIMEConfig{From: "Shop\r\nBcc: x@y.example <news@shop.example>"})
	require.ErrorContains(t, err, "MIMEConfig.From")
	b, err := delivery.NewMIMEBuilder(delivery.MIMEConfig{From: "\"Shop\tBcc: x@y.example\" <news@shop.example>"})
	require.NoError(t, err)
	raw, err := b.Build(sampleMessage())
	require.NoError(t, err)
	p := parseMIME(t, raw)
	require.NotContains(t, p.fieldNames(t), "Bcc")
	from, err := p.msg.Header.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, "Shop Bcc: x@y.example", from[0].Name)
	b, err = delivery.NewMIMEBuilder(delivery.MIMEConfig{From: "news@shop.example"})
	require.NoError(t, err)
	require.Equal(t, "news@shop.example", b.EnvelopeFrom())
}

// FuzzBuildMIME: whatever a profile or a template puts in a message, Build does not panic, and
// what it builds parses, holds exactly the builder's header fields and one recipient, and
// gives back the cleaned subject and name.
func FuzzBuildMIME(f *testing.F) {
	for _, s := range []string{"Zoë", "Eve\r\nBcc: x@example.org", "=?utf-8?q?a?=", "\xff", strings.Repeat("é", 100), "a\u2028b"} {
		f.Add(s, s, "<p>"+s+"</p>", s, "X-Note", s)
	}
	f.Add("", "", "", "plain", "List-Help", "<mailto:help@shop.example>")
	b := reproducible(f, delivery.MIMEConfig{})
	f.Fuzz(func(t *testing.T, name, subject, htmlBody, text, headerName, headerValue string) {
		m := delivery.Message{ID: 1, CampaignID: 2, Email: "r@example.com", Name: name, Subject: subject,
			Preheader: subject, HTML: htmlBody, Text: text, Headers: map[string]string{headerName: headerValue}}
		raw, err := b.Build(m)
		if err != nil {
			require.ErrorIs(t, err, delivery.ErrInvalidMessage)
			return
		}
		p := parseMIME(t, raw)
		// The builder's fields, each once, and the one extra header; nothing else.
		want := map[string]int{textproto.CanonicalMIMEHeaderKey(headerName): 1}
		for _, f := range wantFields {
			if !strings.HasPrefix(f, "List-Unsubscribe") {
				want[f] = 1
			}
		}
		if htmlBody == "" || text == "" {
			want["Content-Transfer-Encoding"] = 1
		}
		got := map[string]int{}
		for _, n := range p.fieldNames(t) {
			got[n]++
		}
		require.Equal(t, want, got)
		to, err := p.msg.Header.AddressList("To")
		require.NoError(t, err)
		require.Len(t, to, 1)
		require.Equal(t, m.Email, to[0].Address)
		require.Equal(t, delivery.HeaderText(name), to[0].Name, "the cleaned name round-trips")
		require.Equal(t, delivery.HeaderText(subject), p.decoded(t, "Subject"), "the cleaned subject round-trips")
		for _, r := range to[0].Name + p.decoded(t, "Subject") {
			require.False(t, r < 0x20 || r == 0x7f || r == '\u2028', "control character %q", r)
		}
		if text != "" {
			// Every CR, LF and CRLF is one line break (a bare CR has no place in a message body).
			lines := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(text)
			require.Equal(t, strings.ToValidUTF8(lines, "\uFFFD"), strings.ToValidUTF8(p.parts["text/plain"], "\uFFFD"))
		}
	})
}

// The preheader goes after the first body start tag, found by a hand-written scan that must
// agree with the regular expression it replaced, on crafted cases and on random strings of
// the characters that matter.
func TestBodyTagEnd_MatchesTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`(?i)<body\b[^>]*>`)
	want := func(s string) int {
		if loc := re.FindStringIndex(s); loc != nil {
			return loc[1]
		}
		return -1
	}
	cases := []string{"", "<body>", "<BODY class=\"x\">", "<bodyx><body>", "<body", "<body\n>", "<bo dy><Body\t>", "<<body>>",
		"<bodyé>", "<body_><body->", "x<body>y", "<body/>", "<html><head></head><body style=\"margin:0\">hi</body></html>"}
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"<", ">", "body", "BoDy", "bod", "y", "x", "_", "-", " ", "\n", "/", "é", "<body", "<p>"}
	for range 20000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		cases = append(cases, b.String())
	}
	found := 0
	for _, s := range cases {
		w := want(s)
		require.Equal(t, w, delivery.BodyTagEnd(s), "%q", s)
		if w >= 0 {
			found++
		}
	}
	require.Greater(t, found, 500, "the random cases include many body tags")
}

// longestWord bounds header runs without allocating; it measures what strings.Fields finds.
func TestLongestWord_MatchesStringsFields(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "bc", " ", "\t", "\u00a0", "\u2003", "é", "\xff", "\u3000", "=?utf-8?q?x?=", "\u0085"}
	for range 20000 {
		var b strings.Builder
		for range r.IntN(10) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		want := 0
		for _, w := range strings.Fields(s) {
			want = max(want, len(w))
		}
		require.Equal(t, want, delivery.LongestWord(s), "%q", s)
	}
}
