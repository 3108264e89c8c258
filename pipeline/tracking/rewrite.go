package tracking

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// Paths of the tracking routes, under the public URL.
const (
	OpenPath  = "/t/o/"
	ClickPath = "/t/c/"
)

// NoTrackAttr on an <a> keeps its link as it is.
const NoTrackAttr = "data-notrack"

// Message identifies one rendered message and says what its campaign tracks.
type Message struct {
	CampaignID int64
	CustomerID string
	Occurrence string
	Track      Track
}

// Rewriter rewrites rendered HTML for engagement tracking. Safe for concurrent use.
type Rewriter struct {
	base   string // the public URL without a trailing slash
	tokens *Tokens
}

// NewRewriter checks that publicURL is an absolute http(s) URL without query or fragment (where
// recipients reach `tailor serve`) and returns the rewriter.
func NewRewriter(publicURL string, tokens *Tokens) (*Rewriter, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("tracking: public URL %q: want an absolute http(s) URL without query, e.g. https://t.example.com", publicURL)
	}
	if tokens == nil {
		return nil, errors.New("tracking: the rewriter needs tokens")
	}
	return &Rewriter{base: strings.TrimRight(publicURL, "/"), tokens: tokens}, nil
}

// pixelAttrs follow the open pixel's src: invisible in every client that loads it.
const pixelAttrs = `" width="1" height="1" alt="" border="0" style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">`

// Rewrite returns src with tracking added as m.Track asks:
//   - clicks: the href of every <a> whose link is absolute http(s), at most MaxURLLen bytes,
//     not under the public URL (the preference page, one-click unsubscribe and tracking links
//     stay as they are) and without a data-notrack attribute becomes PUBLIC_URL/t/c/TOKEN, the
//     token signing the link's URL. mailto:, tel:, #anchors and relative links stay.
//   - opens: a 1x1 <img src="PUBLIC_URL/t/o/TOKEN"> goes before the last </body>, or at the end.
//
// Everything else is copied byte for byte, malformed HTML included; only a rewritten <a> tag is
// written anew (lower-case names, double-quoted values). A token that cannot be minted (an
// over-long customer id) leaves the message untracked rather than failing it.
func (r *Rewriter) Rewrite(src string, m Message) string {
	if m.Track.IsZero() {
		return src
	}
	claims := Claims{CampaignID: m.CampaignID, CustomerID: m.CustomerID, Occurrence: m.Occurrence}
	pixel := ""
	if m.Track.Opens {
		claims.Kind = KindOpen
		tok, err := r.tokens.Mint(claims)
		if err != nil {
			return src
		}
		pixel = `<img src="` + r.base + OpenPath + tok + pixelAttrs
	}
	clicks := m.Track.Clicks && containsFold(src, "<a")
	if !clicks && pixel == "" {
		return src
	}
	claims.Kind = KindClick
	out := make([]byte, 0, len(src)+len(src)/4+len(pixel))
	z := html.NewTokenizer(strings.NewReader(src))
	consumed, bodyAt := 0, -1
	// Where the input ends matters when the pixel goes at the end: inside an unclosed raw-text
	// element, comment or tag it would be swallowed (or shown as text), so it is left out.
	rawOpen, openEnd := "", false
	var attrs []html.Attribute
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		raw := z.Raw()
		start := len(out)
		consumed += len(raw)
		out = append(out, raw...)
		openEnd = false
		switch tt {
		case html.TextToken:
			openEnd = rawOpen != "" || bytes.IndexByte(raw, '<') >= 0
		case html.CommentToken:
			openEnd = !bytes.HasSuffix(raw, []byte(">"))
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			if tt == html.StartTagToken && rawText[string(name)] {
				rawOpen = string(name)
				openEnd = true
			}
			if !clicks || len(name) != 1 || name[0] != 'a' || !more {
				continue
			}
			attrs = attrs[:0]
			href, notrack := -1, false
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				switch string(k) {
				case "href":
					if href < 0 {
						href = len(attrs)
					}
				case NoTrackAttr:
					notrack = true
				}
				if !plainName(k) {
					notrack = true // written anew it might read differently: leave the tag as it is
				}
				attrs = append(attrs, html.Attribute{Key: string(k), Val: string(v)})
			}
			if href < 0 || notrack {
				continue
			}
			target := strings.TrimSpace(attrs[href].Val)
			if !r.trackable(target) {
				continue
			}
			claims.URL = target
			tok, err := r.tokens.Mint(claims)
			if err != nil {
				continue
			}
			attrs[href].Val = r.base + ClickPath + tok
			out = appendTag(out[:start], attrs, tt == html.SelfClosingTagToken)
		case html.EndTagToken:
			name, _ := z.TagName()
			if string(name) == rawOpen {
				rawOpen = ""
			}
			if pixel != "" && string(name) == "body" {
				bodyAt = start
			}
		}
	}
	if consumed < len(src) {
		openEnd = true // an unfinished tag the tokenizer gave up on: copied as it is
		out = append(out, src[consumed:]...)
	}
	if bodyAt < 0 && openEnd {
		pixel = ""
	}
	return insertPixel(string(out), pixel, bodyAt)
}

// rawText are the elements whose content the tokenizer reads as text up to their end tag.
var rawText = map[string]bool{"script": true, "style": true, "textarea": true, "title": true, "xmp": true,
	"iframe": true, "noembed": true, "noframes": true, "noscript": true, "plaintext": true}

// trackable reports whether a link's target gets a click redirect.
func (r *Rewriter) trackable(target string) bool {
	if !validTarget(target) {
		return false
	}
	if len(target) > len(r.base) && strings.EqualFold(target[:len(r.base)], r.base) {
		switch target[len(r.base)] {
		case '/', '?', '#':
			return false // ours: the preference page, one-click unsubscribe, a tracking link
		}
	}
	return true
}

// plainName reports whether an attribute name is one that reads back the same when written
// as name="value".
func plainName(k []byte) bool {
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':' || c == '.') {
			return false
		}
	}
	return len(k) > 0
}

// appendTag writes an <a> start tag with attrs, values escaped and double-quoted.
func appendTag(out []byte, attrs []html.Attribute, selfClosing bool) []byte {
	out = append(out, "<a"...)
	for _, a := range attrs {
		out = append(out, ' ')
		out = append(out, a.Key...)
		out = append(out, `="`...)
		out = append(out, html.EscapeString(a.Val)...)
		out = append(out, '"')
	}
	if selfClosing {
		out = append(out, '/')
	}
	return append(out, '>')
}

func insertPixel(s, pixel string, at int) string {
	if pixel == "" {
		return s
	}
	if at < 0 {
		return s + pixel
	}
	return s[:at] + pixel + s[at:]
}

// containsFold reports whether s contains sub, ASCII case-insensitively (sub lower-case).
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i] == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
