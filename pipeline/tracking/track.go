package tracking

import (
	"errors"
	"fmt"
	"strings"
)

// What a campaign may track (the values of campaigns.track and of --track).
const (
	TrackOpens  = "opens"
	TrackClicks = "clicks"
)

// ErrUnknownTrack matches the errors of ParseTrack and TrackOf for a value other than opens or
// clicks.
var ErrUnknownTrack = errors.New("unknown tracking value")

// Track is what a campaign tracks; the zero value tracks nothing (the default).
type Track struct {
	Opens, Clicks bool
}

// ParseTrack parses a comma-separated list such as "opens,clicks" ("" tracks nothing).
func ParseTrack(s string) (Track, error) {
	if strings.TrimSpace(s) == "" {
		return Track{}, nil
	}
	return TrackOf(strings.Split(s, ","))
}

// TrackOf builds a Track from values (campaigns.track, or flag values); an unknown value is an
// error naming the allowed ones.
func TrackOf(values []string) (Track, error) {
	var t Track
	for _, v := range values {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case TrackOpens:
			t.Opens = true
		case TrackClicks:
			t.Clicks = true
		default:
			return Track{}, fmt.Errorf("%w %q: want opens, clicks or both (opens,clicks)", ErrUnknownTrack, v)
		}
	}
	return t, nil
}

// Values returns the tracked kinds in a stable order (opens, clicks), as campaigns.track
// stores them.
func (t Track) Values() []string {
	v := []string{}
	if t.Opens {
		v = append(v, TrackOpens)
	}
	if t.Clicks {
		v = append(v, TrackClicks)
	}
	return v
}

// String is "opens,clicks", "opens", "clicks" or "" (nothing tracked).
func (t Track) String() string { return strings.Join(t.Values(), ",") }

// IsZero reports whether nothing is tracked.
func (t Track) IsZero() bool { return !t.Opens && !t.Clicks }
