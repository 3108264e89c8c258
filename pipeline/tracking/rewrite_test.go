package tracking_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/tailor-email/tailor/pipeline/tracking"
)

const publicURL = "https://t.example.com"

var fixedNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func rewriter(t testing.TB) (*tracking.Rewriter, *tracking.Tokens) {
	t.Helper()
	tok := newTokens(t, func() time.Time { return fixedNow }, key(t, "k1", 1))
	r, err := tracking.NewRewriter(publicURL+"/", tok)
	require.NoError(t, err)
	return r, tok
}

var msg = tracking.Message{CampaignID: 9, CustomerID: "c1", Occurrence: "", Track: tracking.Track{Opens: true, Clicks: true}}

// placeholders in the expected outputs: {C:URL} is the click link for URL, {O} the open pixel.
var placeholderRE = regexp.MustCompile(`\{C:([^}]*)\}|\{O\}`)

func expand(t *testing.T, tok *tracking.Tokens, m tracking.Message, want string) string {
	t.Helper()
	return placeholderRE.ReplaceAllStringFunc(want, func(p string) string {
		c := tracking.Claims{CampaignID: m.CampaignID, CustomerID: m.CustomerID, Occurrence: m.Occurrence}
		if p == "{O}" {
			c.Kind = tracking.KindOpen
			s, err := tok.Mint(c)
			require.NoError(t, err)
			return `<img src="` + publicURL + `/t/o/` + s + `" width="1" height="1" alt="" border="0" style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">`
		}
		c.Kind, c.URL = tracking.KindClick, html.UnescapeString(p[3:len(p)-1])
		s, err := tok.Mint(c)
		require.NoError(t, err)
		return publicURL + "/t/c/" + s
	})
}

func TestRewrite_Golden(t *testing.T) {
	t.Parallel()
	r, tok := rewriter(t)
	for _, tc := range []struct{ name, in, want string }{
		{"link and pixel",
			`<html><body><p>Hi <a href="https://shop.example.com/a?x=1&amp;y=2">shop</a></p></body></html>`,
			`<html><body><p>Hi <a href="{C:https://shop.example.com/a?x=1&amp;y=2}">shop</a></p>{O}</body></html>`},
		{"mailto, tel, anchor, relative stay",
			`<a href="mailto:a@b.c">m</a><a href="tel:+331">t</a><a href="#top">a</a><a href="/rel">r</a><a name="x">n</a>`,
			`<a href="mailto:a@b.c">m</a><a href="tel:+331">t</a><a href="#top">a</a><a href="/rel">r</a><a name="x">n</a>{O}`},
		{"preference center and unsubscribe stay",
			`<a href="https://t.example.com/unsubscribe/TOK">u</a><a href="https://T.EXAMPLE.COM/preferences/TOK">p</a><a href="https://t.example.com.evil.test/x">e</a>`,
			`<a href="https://t.example.com/unsubscribe/TOK">u</a><a href="https://T.EXAMPLE.COM/preferences/TOK">p</a><a href="{C:https://t.example.com.evil.test/x}">e</a>{O}`},
		{"data-notrack stays",
			`<a data-notrack href="https://x.test/">x</a><a href="https://y.test/" DATA-NOTRACK="1">y</a>`,
			`<a data-notrack href="https://x.test/">x</a><a href="https://y.test/" DATA-NOTRACK="1">y</a>{O}`},
		{"uppercase tags and attributes, quotes in values",
			`<BODY><A HREF='https://x.test/?q="a"' CLASS="btn" title="it's">Go</A></BODY>`,
			`<BODY><A HREF="{C:https://x.test/?q=&#34;a&#34;}" CLASS="btn" title="it's">Go</A>{O}</BODY>`},
		{"unquoted href and spaces",
			`<a  href = https://x.test/p  style="color:red">x</a>`,
			`<a  href = "{C:https://x.test/p}"  style="color:red">x</a>{O}`},
		{"character references decode as in attributes",
			`<a href="https://x.test/?a=1&copy=2&amp;b=3&reg_id=4">x</a><a href='https://x.test/&#x41;'>y</a>`,
			`<a href="{C:https://x.test/?a=1&amp;copy=2&amp;b=3®_id=4}">x</a><a href="{C:https://x.test/A}">y</a>{O}`},
		{"links in comments, scripts and text stay",
			`<!-- <a href="https://c.test/">c</a> --><script>var a='<a href="https://s.test/">';</script>see https://t.test/ <textarea><a href="https://ta.test/"></textarea>`,
			`<!-- <a href="https://c.test/">c</a> --><script>var a='<a href="https://s.test/">';</script>see https://t.test/ <textarea><a href="https://ta.test/"></textarea>{O}`},
		{"pixel before the last body end",
			`<body>a</body><p>trailing</p></body ><!-- x -->`,
			`<body>a</body><p>trailing</p>{O}</body ><!-- x -->`},
		{"javascript and protocol-relative links stay",
			`<a href="javascript:alert(1)">j</a><a href="//x.test/">p</a><a href="https://">h</a>`,
			`<a href="javascript:alert(1)">j</a><a href="//x.test/">p</a><a href="https://">h</a>{O}`},
		{"self-closing; of duplicate attributes the first counts",
			`<a href="https://x.test/1" href="https://x.test/2"/>`,
			`<a href="{C:https://x.test/1}" href="https://x.test/2"/>{O}`},
		{"unfinished tag at the end: no pixel after it",
			`<p>hi <a href="https://x.test/`,
			`<p>hi <a href="https://x.test/`},
		{"unclosed script at the end: no pixel inside it",
			`<p>hi</p><script>var x`,
			`<p>hi</p><script>var x`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, expand(t, tok, msg, tc.want), r.Rewrite(tc.in, msg))
		})
	}
}

func TestRewrite_OnlyWhatTheCampaignTracks(t *testing.T) {
	t.Parallel()
	r, tok := rewriter(t)
	in := `<html><body><a href="https://x.test/">x</a></body></html>`
	require.Equal(t, in, r.Rewrite(in, tracking.Message{CampaignID: 9, CustomerID: "c1"}), "nothing tracked: untouched")
	opens := tracking.Message{CampaignID: 9, CustomerID: "c1", Track: tracking.Track{Opens: true}}
	require.Equal(t, expand(t, tok, opens, `<html><body><a href="https://x.test/">x</a>{O}</body></html>`), r.Rewrite(in, opens))
	clicks := tracking.Message{CampaignID: 9, CustomerID: "c1", Track: tracking.Track{Clicks: true}}
	require.Equal(t, expand(t, tok, clicks, `<html><body><a href="{C:https://x.test/}">x</a></body></html>`), r.Rewrite(in, clicks))
	require.Equal(t, "no body"+expand(t, tok, opens, "{O}"), r.Rewrite("no body", opens), "no </body>: the pixel goes at the end")
	long := tracking.Message{CampaignID: 9, CustomerID: strings.Repeat("x", tracking.MaxIDLen+1), Track: tracking.Track{Opens: true, Clicks: true}}
	require.Equal(t, in, r.Rewrite(in, long), "no token can be minted: untracked, not failed")
}

// The tracked links verify and carry the original target; the message's text is unchanged.
func TestRewrite_LinksVerify(t *testing.T) {
	t.Parallel()
	r, tok := rewriter(t)
	out := r.Rewrite(newsletter(t), msg)
	links := regexp.MustCompile(publicURL+`/t/c/([A-Za-z0-9_-]+)`).FindAllStringSubmatch(out, -1)
	require.Len(t, links, 23)
	for _, l := range links {
		c, err := tok.Parse(l[1])
		require.NoError(t, err)
		require.Equal(t, tracking.KindClick, c.Kind)
		require.Contains(t, c.URL, "https://shop.example.com/")
	}
	require.Equal(t, textOf(t, newsletter(t)), textOf(t, out))
}

func newsletter(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/newsletter.html")
	require.NoError(t, err)
	return string(b)
}

// textOf is the text content of s (what a reader sees), by the tokenizer.
func textOf(t testing.TB, s string) string {
	t.Helper()
	var b strings.Builder
	z := html.NewTokenizer(strings.NewReader(s))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		if tt == html.TextToken {
			b.Write(z.Text())
		}
	}
	return b.String()
}

func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		`<html><body><a href="https://x.test/">x</a></body></html>`,
		`<a href='https://x.test/?a="b"'>`, `<A HREF=https://x.test/>`, `<a href="https://x.test/`, `<a`, `</body`,
		`<!-- <a href="https://x.test/"> -->`, `<script><a href="https://x.test/"></script>`, `<a href="mailto:x">`,
		"<a href=\"https://x.test/\x00\">", `<<a href="https://x.test/">>`, `<a data-notrack href="https://x.test/">`,
	} {
		f.Add(s)
	}
	tok, err := tracking.NewTokens(tracking.TokensConfig{Keys: []tracking.Key{{ID: "k1", Secret: master(1)}}})
	if err != nil {
		f.Fatal(err)
	}
	r, err := tracking.NewRewriter(publicURL, tok)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := r.Rewrite(in, msg)
		// Everything a reader sees is still there, unchanged: the text outside tags, as the
		// tokenizer reads it (the pixel and the rewritten links are tags).
		if got, want := textOf(t, out), textOf(t, in); got != want {
			t.Fatalf("text changed:\n in  %q\n out %q\n text in  %q\n text out %q", in, out, want, got)
		}
	})
}

// BenchmarkRewrite rewrites the ~11 KB newsletter of testdata (opens and clicks, 29 links of which 23 are tracked):
// what the render jobs add per tracked message.
func BenchmarkRewrite(b *testing.B) {
	r, _ := rewriter(b)
	in := newsletter(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Rewrite(in, msg)
	}
}

// BenchmarkRewrite_OpensOnly is the tokenizer pass alone (one token, the pixel): the part of
// BenchmarkRewrite that does not depend on the number of links.
func BenchmarkRewrite_OpensOnly(b *testing.B) {
	r, _ := rewriter(b)
	in := newsletter(b)
	m := msg
	m.Track.Clicks = false
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Rewrite(in, m)
	}
}
