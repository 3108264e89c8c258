package tracking

import (
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
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
		strings.ContainsAny(publicURL, "\"'<>&` \t\r\n") {
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
// It reads the HTML as golang.org/x/net/html's tokenizer does (comments, raw text such as
// <style>, quoted and unquoted attributes; see scanner) and copies everything byte for byte
// but the href values it replaces, malformed HTML included. When the input ends inside a tag,
// comment or raw-text element and has no </body>, the pixel is left out rather than swallowed.
// A token that cannot be minted (an over-long customer id) leaves the message untracked rather
// than failing it.
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
	var out []byte
	sc := scanner{src: src}
	var a anchor
	last, bodyAt, kind := 0, -1, tokEOF
	for {
		k, start := sc.next(&a)
		if k == tokEOF {
			break
		}
		kind = k
		switch k {
		case tokEndBody:
			if pixel != "" {
				bodyAt = len(out) + start - last
			}
		case tokStartA:
			if !clicks || a.notrack || a.whole.start < 0 {
				continue
			}
			target := strings.TrimSpace(attrValue(src[a.val.start:a.val.end], src[a.whole.start:a.whole.end]))
			if !r.trackable(target) {
				continue
			}
			claims.URL = target
			if out == nil {
				out = make([]byte, 0, len(src)+len(src)/2+len(pixel))
			}
			mark := len(out)
			out = append(out, src[last:a.whole.start]...)
			out = append(out, '"')
			out = append(out, r.base...)
			out = append(out, ClickPath...)
			var err error
			if out, err = r.tokens.AppendMint(out, claims); err != nil {
				out = out[:mark] // not trackable after all: the link stays
				continue
			}
			out = append(out, '"')
			last = a.whole.end
		}
	}
	if pixel != "" && bodyAt < 0 && (kind == tokOpen || kind == tokStartRaw || sc.unclosed) {
		// The input ends inside a tag, a comment or a raw-text element, where the pixel would
		// be swallowed or shown as text: it is left out.
		pixel = ""
	}
	if out == nil {
		if bodyAt < 0 {
			return src + pixel
		}
		return src[:bodyAt] + pixel + src[bodyAt:]
	}
	out = append(out, src[last:]...)
	if bodyAt < 0 {
		return string(append(out, pixel...))
	}
	n := len(out)
	out = append(out, pixel...)
	copy(out[bodyAt+len(pixel):], out[bodyAt:n])
	copy(out[bodyAt:], pixel)
	return string(out)
}

// attrValue decodes the character references in an attribute value (val, written as whole,
// its quotes included) as browsers do in attributes, where "&copy=2" stays as it is but
// "&reg_id" is "®_id": the common "&amp;" directly, anything else through the x/net tokenizer.
func attrValue(val, whole string) string {
	n := strings.Count(val, "&")
	if n == 0 {
		return val
	}
	if strings.Count(val, "&amp;") == n {
		return strings.ReplaceAll(val, "&amp;", "&")
	}
	z := html.NewTokenizer(strings.NewReader("<a href=" + whole + ">"))
	if z.Next() != html.StartTagToken {
		return ""
	}
	_, v, _ := z.TagAttr()
	return string(v)
}

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

// containsFold reports whether s contains sub, ASCII case-insensitively (sub lower-case).
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i] == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
