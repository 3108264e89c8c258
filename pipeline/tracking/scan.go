package tracking

// A scanner over HTML that finds what Rewrite needs, <a> start tags with their href and
// data-notrack attributes and </body> end tags, following the tokenization rules of
// golang.org/x/net/html's Tokenizer (WHATWG's, in the states that matter here): comments,
// doctypes and bogus comments, raw text (script, style, textarea, title, ...), quoted and
// unquoted attribute values. It allocates nothing and copies nothing: the x/net tokenizer
// clones every attribute name of every tag, which made a rewrite cost several times a render.
// A differential fuzz test holds it to the tokenizer's reading.

import "strings"

// span is a byte range of the input; start < 0 means none.
type span struct{ start, end int }

// anchor is one <a> start tag: its href attribute's value as written (the quotes excluded) and
// the whole value span to replace (the quotes included), and whether data-notrack is set.
type anchor struct {
	val, whole span
	notrack    bool
}

// scanner walks src token by token.
type scanner struct {
	src string
	pos int
	// rawTag is the raw-text element whose end tag ends the current text ("" outside one).
	rawTag string
	// unclosed: the input ended inside a raw-text element.
	unclosed bool
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' }

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// eqFold reports whether s equals lower-case ASCII word, case-insensitively.
func eqFold(s, word string) bool {
	if len(s) != len(word) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != word[i] {
			return false
		}
	}
	return true
}

// token kinds the scanner reports.
const (
	tokEOF = iota
	tokText
	tokStartA   // an <a> start tag: see anchor
	tokStartRaw // a start tag that opens raw text
	tokOtherTag // any other start tag, or an end tag other than </body>
	tokEndBody  // </body ...>
	tokComment  // comment, doctype, bogus comment, "</>"
	tokOpen     // input ended inside a tag or a comment
)

// next scans one token from s.pos and returns its kind and start; for tokStartA it fills a.
func (s *scanner) next(a *anchor) (int, int) {
	src, start := s.src, s.pos
	if start >= len(src) {
		return tokEOF, start
	}
	if s.rawTag != "" {
		s.pos = s.rawEnd()
		s.rawTag, s.unclosed = "", s.pos == len(src)
		if s.pos > start {
			return tokText, start
		}
	}
	i := start
	for {
		j := strings.IndexByte(src[i:], '<')
		if j < 0 {
			i = len(src)
			break
		}
		if i += j; i+1 < len(src) && isMarkupStart(src[i+1]) {
			break
		}
		i++
	}
	if i > start {
		s.pos = i
		return tokText, start
	}
	// src[start] == '<' and a markup start follows.
	c := src[start+1]
	switch {
	case isLetter(c):
		return s.startTag(start, a)
	case c == '/':
		if start+2 >= len(src) {
			s.pos = len(src)
			return tokOpen, start
		}
		c2 := src[start+2]
		if c2 == '>' {
			s.pos = start + 3
			return tokComment, start
		}
		if isLetter(c2) {
			nameEnd, end, ok := s.tagBody(start+2, nil)
			s.pos = end
			if !ok {
				return tokOpen, start
			}
			if eqFold(src[start+2:nameEnd], "body") {
				return tokEndBody, start
			}
			return tokOtherTag, start
		}
		return s.untilCloseAngle(start, start+2)
	case c == '!':
		if start+3 < len(src) && src[start+2] == '-' && src[start+3] == '-' {
			return s.comment(start)
		}
		return s.untilCloseAngle(start, start+2)
	default: // '?'
		return s.untilCloseAngle(start, start+1)
	}
}

func isMarkupStart(c byte) bool { return isLetter(c) || c == '/' || c == '!' || c == '?' }

// untilCloseAngle ends a bogus comment or doctype at the next '>'.
func (s *scanner) untilCloseAngle(start, from int) (int, int) {
	for i := from; i < len(s.src); i++ {
		if s.src[i] == '>' {
			s.pos = i + 1
			return tokComment, start
		}
	}
	s.pos = len(s.src)
	return tokOpen, start
}

// comment reads "<!--...-->" as the tokenizer does: it ends at a '>' after two or more dashes
// or right at its beginning ("<!-->", "<!--->"), or at "--!>".
func (s *scanner) comment(start int) (int, int) {
	src := s.src
	dashes, beginning := 0, true
	for i := start + 4; i < len(src); i++ {
		switch src[i] {
		case '-':
			dashes++
			continue
		case '>':
			if dashes >= 2 || beginning {
				s.pos = i + 1
				return tokComment, start
			}
		case '!':
			if dashes >= 2 {
				i++
				if i >= len(src) {
					break
				}
				if src[i] == '>' {
					s.pos = i + 1
					return tokComment, start
				}
			}
		}
		dashes, beginning = 0, false
	}
	s.pos = len(src)
	return tokOpen, start
}

// rawTags are the elements whose content is raw text up to their end tag.
var rawTags = []string{"iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea", "title", "xmp"}

// startTag reads a start tag at start ("<" and a letter).
func (s *scanner) startTag(start int, a *anchor) (int, int) {
	src := s.src
	isA := (src[start+1] == 'a' || src[start+1] == 'A') && start+2 < len(src) && (isSpace(src[start+2]) || src[start+2] == '/' || src[start+2] == '>')
	var got *anchor
	if isA {
		*a = anchor{val: span{-1, -1}, whole: span{-1, -1}}
		got = a
	}
	nameEnd, end, ok := s.tagBody(start+1, got)
	s.pos = end
	if !ok {
		return tokOpen, start
	}
	if isA {
		return tokStartA, start
	}
	name := src[start+1 : nameEnd]
	for _, r := range rawTags {
		if eqFold(name, r) {
			s.rawTag = r
			return tokStartRaw, start
		}
	}
	return tokOtherTag, start
}

// tagBody reads a tag's name from i and its attributes up to and including the closing '>',
// as the tokenizer's readTag does. It returns the end of the name, the position after the tag
// and false when the input ends first. With a, it records the first href and data-notrack.
func (s *scanner) tagBody(i int, a *anchor) (nameEnd, end int, ok bool) {
	src := s.src
	for ; i < len(src); i++ {
		if c := src[i]; isSpace(c) || c == '/' || c == '>' {
			break
		}
	}
	nameEnd = i
	for {
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i >= len(src) {
			return nameEnd, len(src), false
		}
		if src[i] == '>' {
			return nameEnd, i + 1, true
		}
		// Attribute name: up to a space, '/', '>' or '=' (an '=' that starts it belongs to it).
		k := i
		for i < len(src) {
			c := src[i]
			if c == '=' && i > k || isSpace(c) || c == '/' || c == '>' {
				break
			}
			i++
		}
		key := span{k, i}
		if i >= len(src) {
			return nameEnd, len(src), false
		}
		// readTagAttrVal: spaces, then '/' ends the attribute, '=' starts a value.
		val, whole := span{i, i}, span{-1, -1}
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i >= len(src) {
			return nameEnd, len(src), false
		}
		switch src[i] {
		case '/':
			i++
		case '=':
			i++
			for i < len(src) && isSpace(src[i]) {
				i++
			}
			if i >= len(src) {
				return nameEnd, len(src), false
			}
			switch q := src[i]; q {
			case '>':
				val = span{i, i}
			case '"', '\'':
				j := i + 1
				for j < len(src) && src[j] != q {
					j++
				}
				if j >= len(src) {
					return nameEnd, len(src), false
				}
				val, whole = span{i + 1, j}, span{i, j + 1}
				i = j + 1
			default:
				j := i
				for j < len(src) && !isSpace(src[j]) && src[j] != '>' {
					j++
				}
				if j >= len(src) {
					return nameEnd, len(src), false
				}
				val, whole = span{i, j}, span{i, j}
				i = j
			}
		}
		if a != nil && key.end > key.start {
			switch name := src[key.start:key.end]; {
			case a.val.start < 0 && eqFold(name, "href"):
				a.val, a.whole = val, whole
			case eqFold(name, NoTrackAttr):
				a.notrack = true
			}
		}
	}
}

// rawEnd returns where the raw text of s.rawTag that starts at s.pos ends: at its end tag
// ("</" the name and a space, '/' or '>'), or at the end of the input (always for plaintext).
func (s *scanner) rawEnd() int {
	src, tag := s.src, s.rawTag
	if tag == "plaintext" {
		return len(src)
	}
	for i := s.pos; i+1 < len(src); i++ {
		if src[i] != '<' || src[i+1] != '/' {
			continue
		}
		j := i + 2
		if j+len(tag) < len(src) && eqFold(src[j:j+len(tag)], tag) {
			if c := src[j+len(tag)]; isSpace(c) || c == '/' || c == '>' {
				return i
			}
		}
	}
	return len(src)
}
