package jobs

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrInvalidSchedule matches every error of ParseSendAt, ParseQuietHours, ParseCap and
// LoadZone: input the user fixes on the command line.
var ErrInvalidSchedule = errors.New("invalid schedule")

func scheduleErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSchedule, fmt.Sprintf(format, args...))
}

// SendAt is when a campaign's messages become claimable: one instant for everyone (At), or a
// clock time in each recipient's own time zone (Local, "HH:MM").
type SendAt struct {
	At    time.Time
	Local string
}

// IsZero reports whether no send time is set (a draft).
func (s SendAt) IsZero() bool { return s.At.IsZero() && s.Local == "" }

// String returns the form ParseSendAt reads back.
func (s SendAt) String() string {
	switch {
	case s.Local != "":
		return "local:" + s.Local
	case s.At.IsZero():
		return ""
	}
	return s.At.UTC().Format(time.RFC3339)
}

var clockRE = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)

// parseClock reads HH:MM (24 h) into minutes after midnight.
func parseClock(s string) (int, bool) {
	m := clockRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	return h*60 + mi, true
}

// SendAtSlack is how far in the past an absolute --send-at may be (clock skew, typing time).
const SendAtSlack = time.Minute

// ParseSendAt reads --send-at: an RFC 3339 time, "now", "+2h" (a Go duration from now), or
// "local:09:00" (each recipient's local time). A time more than SendAtSlack in the past is
// refused.
func ParseSendAt(s string, now time.Time) (SendAt, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return SendAt{}, scheduleErr("--send-at is empty (want RFC 3339, now, +DURATION or local:HH:MM)")
	case s == "now":
		return SendAt{At: now}, nil
	case strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s[1:])
		if err != nil || d < 0 {
			return SendAt{}, scheduleErr("--send-at %q: want +DURATION such as +2h or +30m", s)
		}
		return SendAt{At: now.Add(d)}, nil
	case strings.HasPrefix(s, "local:"):
		c := strings.TrimPrefix(s, "local:")
		if _, ok := parseClock(c); !ok {
			return SendAt{}, scheduleErr("--send-at %q: want local:HH:MM (24 h), such as local:09:00", s)
		}
		return SendAt{Local: c}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return SendAt{}, scheduleErr("--send-at %q: want RFC 3339 (2026-12-01T09:00:00+01:00), now, +DURATION or local:HH:MM", s)
	}
	if t.Before(now.Add(-SendAtSlack)) {
		return SendAt{}, scheduleErr("--send-at %s is in the past (it is %s now)", t.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return SendAt{At: t}, nil
}

// LoadZone loads an IANA time zone name, with an error that says what is expected.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil || strings.EqualFold(name, "local") {
		return nil, scheduleErr("time zone %q: want an IANA name such as Europe/Berlin or America/New_York", name)
	}
	return loc, nil
}

// QuietHours is a recipient-local window, [Start, End) in minutes after midnight, during which
// no message becomes claimable; it may wrap midnight (21:00-08:00).
type QuietHours struct {
	Start, End int
}

// IsZero reports whether there are no quiet hours.
func (q QuietHours) IsZero() bool { return q.Start == q.End }

// String returns the HH:MM-HH:MM form.
func (q QuietHours) String() string {
	if q.IsZero() {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", q.Start/60, q.Start%60, q.End/60, q.End%60)
}

// ParseQuietHours reads HH:MM-HH:MM ("" for none).
func ParseQuietHours(s string) (QuietHours, error) {
	if s == "" {
		return QuietHours{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	start, ok1 := parseClock(a)
	end, ok2 := parseClock(b)
	if !ok || !ok1 || !ok2 || start == end {
		return QuietHours{}, scheduleErr("--quiet-hours %q: want HH:MM-HH:MM (recipient-local, 24 h), such as 21:00-08:00", s)
	}
	return QuietHours{Start: start, End: end}, nil
}

// Release returns t, or when t falls inside the quiet hours in loc, the end of that quiet
// window: a held message is delayed, never dropped.
func (q QuietHours) Release(t time.Time, loc *time.Location) time.Time {
	if q.IsZero() {
		return t
	}
	lt := t.In(loc)
	mins := lt.Hour()*60 + lt.Minute()
	inside := q.Start < q.End && mins >= q.Start && mins < q.End ||
		q.Start > q.End && (mins >= q.Start || mins < q.End)
	if !inside {
		return t
	}
	day := lt
	if q.Start > q.End && mins >= q.Start {
		day = lt.AddDate(0, 0, 1) // the window ends tomorrow morning
	}
	return time.Date(day.Year(), day.Month(), day.Day(), q.End/60, q.End%60, 0, 0, loc)
}

// Cap is a frequency cap: at most Count messages per recipient within Window, across campaigns.
type Cap struct {
	Count  int
	Window time.Duration
}

// IsZero reports whether there is no cap.
func (c Cap) IsZero() bool { return c.Count == 0 }

// String returns the N/DURATION form.
func (c Cap) String() string {
	if c.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d/%s", c.Count, formatDuration(c.Window))
}

// ParseCap reads N/DURATION such as 2/24h or 1/7d ("" or "none" for no cap).
func ParseCap(s string) (Cap, error) {
	if s == "" || s == "none" {
		return Cap{}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(a)
	if !ok || err != nil || n < 1 {
		return Cap{}, scheduleErr("--max-per-customer %q: want N/DURATION such as 2/24h or 1/7d", s)
	}
	d, err := ParseDays(b)
	if err != nil || d <= 0 {
		return Cap{}, scheduleErr("--max-per-customer %q: want N/DURATION such as 2/24h or 1/7d", s)
	}
	return Cap{Count: n, Window: d}, nil
}

// ParseDays reads a Go duration that may also be whole days: 7d, 36h, 90m.
func ParseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q: want a duration such as 7d, 24h or 30m", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 7d, 24h or 30m", s)
	}
	return v, nil
}

func formatDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// sendTime is when one recipient's message becomes claimable: the campaign's instant, or the
// next local clock time (today's, or tomorrow's when it has passed at start: nextDay), then
// moved out of the quiet hours.
func (c *Campaign) sendTime(zone string, start time.Time) (t time.Time, nextDay bool) {
	loc := c.location(zone)
	switch {
	case c.SendAt.Local != "":
		mins, _ := parseClock(c.SendAt.Local)
		ls := start.In(loc)
		t = time.Date(ls.Year(), ls.Month(), ls.Day(), mins/60, mins%60, 0, 0, loc)
		if t.Before(ls) {
			t, nextDay = t.AddDate(0, 0, 1), true
		}
	case !c.SendAt.At.IsZero() && c.SendAt.At.After(start):
		t = c.SendAt.At
	default:
		t = start
	}
	return c.QuietHours.Release(t, loc).UTC(), nextDay
}

// location is a recipient's time zone: the profile's when valid, else the campaign's default.
func (c *Campaign) location(zone string) *time.Location {
	if zone != "" {
		if loc, err := cachedZone(zone); err == nil {
			return loc
		}
	}
	if loc, err := cachedZone(c.Timezone); err == nil {
		return loc
	}
	return time.UTC
}

var zones sync.Map // name -> *time.Location; profiles name few zones

func cachedZone(name string) (*time.Location, error) {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := LoadZone(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}
