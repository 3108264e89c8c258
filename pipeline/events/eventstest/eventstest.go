package eventstest

import (
	"fmt"
	"strings"
	"time"
)

// Sized returns a valid custom event of exactly size bytes (size must leave room for the
// envelope, about 150 bytes). It is built so that its normalised form is longer than itself,
// as a client's maximal event may be: the timestamp is in epoch milliseconds (normalised to
// RFC 3339), and the padding holds U+2028 (which JSON encoders write as \u2028) and <, >, &
// (which json.Marshal escapes as \u003c...).
func Sized(eventID, customerID string, ts time.Time, size int) []byte {
	head := fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"type":"custom","timestamp":%d,"properties":{"name":"sized","data":{"pad":"`+"\u2028",
		eventID, customerID, ts.UnixMilli())
	const tail = `"}}}`
	n := size - len(head) - len(tail)
	if n < 0 {
		panic(fmt.Sprintf("eventstest: %d bytes is too small for an event", size))
	}
	return []byte(head + strings.Repeat("<&>x", n/4+1)[:n] + tail)
}
