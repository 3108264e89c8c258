package delivery

// qpEncoder is mime/quotedprintable's Writer (Binary false) as an append function, copying runs
// of literal bytes a line at a time where the standard library handles every byte through a
// 78-byte line buffer; that was the relay's largest cost (a quarter of its CPU on the 100 000-
// message benchmark). It writes the standard library's bytes (FuzzQP checks it) but for one
// fix: the standard library forgets a line break when a CR, escaped bytes and a LF follow each
// other ("\r\u00e9\n" decodes to "\r\n\u00e9"), since its encode leaves the CR state set; here an
// escaped byte ends it, so every CR, LF and CRLF of the input is one line break.
type qpEncoder struct {
	col int  // bytes on the current output line (the standard library's w.i)
	cr  bool // the last input line break was a CR: a LF right after it is the same break
}

const qpLineMax = 76 // output line length before the CRLF, "=" of a soft line break included

const (
	qpLiteral byte = iota // printable ASCII except '=', and space and tab
	qpEscape              // written as =XX
	qpBreak               // CR or LF: a line break (CRLF) in the output
)

var qpClass = func() (t [256]byte) {
	for i := range t {
		b := byte(i)
		switch {
		case b == '\r' || b == '\n':
			t[i] = qpBreak
		case b >= '!' && b <= '~' && b != '=', b == ' ', b == '\t':
			t[i] = qpLiteral
		default:
			t[i] = qpEscape
		}
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// append encodes s after dst.
func (e *qpEncoder) append(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		b := s[i]
		switch qpClass[b] {
		case qpLiteral:
			j := i + 1
			for j < len(s) && qpClass[s[j]] == qpLiteral {
				j++
			}
			for i < j {
				if e.col == qpLineMax-1 {
					dst = append(dst, "=\r\n"...)
					e.col = 0
				}
				k := min(j, i+qpLineMax-1-e.col)
				dst = append(dst, s[i:k]...)
				e.col += k - i
				i = k
			}
			e.cr = false
		case qpEscape:
			dst = e.escape(dst, b)
			i++
		default: // qpBreak
			i++
			if e.cr && b == '\n' {
				e.cr = false
				continue
			}
			dst = e.lastByte(dst)
			dst = append(dst, '\r', '\n')
			e.cr = b == '\r'
			e.col = 0
		}
	}
	return dst
}

// escape writes b as =XX, after a soft line break when it would not fit on the line.
func (e *qpEncoder) escape(dst []byte, b byte) []byte {
	e.cr = false
	if qpLineMax-1-e.col < 3 {
		dst = append(dst, "=\r\n"...)
		e.col = 0
	}
	e.col += 3
	return append(dst, '=', upperHex[b>>4], upperHex[b&0x0f])
}

// lastByte encodes a space or tab that ends the line (the standard library's checkLastByte).
func (e *qpEncoder) lastByte(dst []byte) []byte {
	if e.col == 0 {
		return dst
	}
	if b := dst[len(dst)-1]; b == ' ' || b == '\t' {
		e.col--
		dst = e.escape(dst[:len(dst)-1], b)
	}
	return dst
}

// close ends the encoding (a trailing space or tab is encoded).
func (e *qpEncoder) close(dst []byte) []byte {
	return e.lastByte(dst)
}
