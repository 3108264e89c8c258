package preferences

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// Topic is one entry of the topics catalogue: what a recipient can subscribe to and a
// campaign's --topic names.
type Topic struct {
	Name        string
	Description string
	// DefaultStatus is what a customer without a subscriptions row for the topic has:
	// profile.StatusSubscribed (opt-out) or profile.StatusUnsubscribed (opt-in).
	DefaultStatus string
	CreatedAt     time.Time
	ArchivedAt    *time.Time
}

// Archived reports whether the topic was archived.
func (t Topic) Archived() bool { return t.ArchivedAt != nil }

var topicNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// MaxTopicDescription bounds a topic's description (topics.description).
const MaxTopicDescription = 500

// NewTopic is what `tailor topic create` asks for.
type NewTopic struct {
	Name          string
	Description   string
	DefaultStatus string // default profile.StatusUnsubscribed (opt-in)
}

// CreateTopic adds a topic to the catalogue. A name already used (archived or not) is
// ErrTopicExists; a bad name, description or default is a *ValidationError saying what to fix.
func (s *Store) CreateTopic(ctx context.Context, t NewTopic) (Topic, error) {
	if t.DefaultStatus == "" {
		t.DefaultStatus = profile.StatusUnsubscribed
	}
	switch {
	case !topicNameRE.MatchString(t.Name):
		return Topic{}, &ValidationError{Field: "name", Reason: fmt.Sprintf("%q: use 1 to 64 lower-case letters, digits, _ or -, starting with a letter or digit", t.Name)}
	case len(t.Description) > MaxTopicDescription:
		return Topic{}, &ValidationError{Field: "description", Reason: fmt.Sprintf("%d bytes, at most %d", len(t.Description), MaxTopicDescription)}
	case t.DefaultStatus != profile.StatusSubscribed && t.DefaultStatus != profile.StatusUnsubscribed:
		return Topic{}, &ValidationError{Field: "default", Reason: fmt.Sprintf("%q: want subscribed (opt-out) or unsubscribed (opt-in)", t.DefaultStatus)}
	}
	rows, err := s.db.Query(ctx, queries.Get("topic-create"), t.Name, t.Description, t.DefaultStatus)
	if err != nil {
		return Topic{}, fmt.Errorf("create topic %s: %w", t.Name, err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, scanTopic)
	if errors.Is(err, pgx.ErrNoRows) {
		return Topic{}, fmt.Errorf("%w: %q (tailor topic list shows the catalogue, archived topics with --all)", ErrTopicExists, t.Name)
	}
	if err != nil {
		return Topic{}, fmt.Errorf("create topic %s: %w", t.Name, err)
	}
	return got, nil
}

// Topics lists the catalogue by name; archived topics only with all.
func (s *Store) Topics(ctx context.Context, all bool) ([]Topic, error) {
	rows, err := s.db.Query(ctx, queries.Get("topic-list"), all)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	ts, err := pgx.CollectRows(rows, scanTopic)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	return ts, nil
}

// ArchiveTopic archives a topic: the preference page stops listing it, Check refuses new sends
// for it, and the subscriptions rows stay. Archiving an archived topic changes nothing; an
// unknown name is ErrUnknownTopic.
func (s *Store) ArchiveTopic(ctx context.Context, name string) (Topic, error) {
	rows, err := s.db.Query(ctx, queries.Get("topic-archive"), name)
	if err != nil {
		return Topic{}, fmt.Errorf("archive topic %s: %w", name, err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, scanTopic)
	if errors.Is(err, pgx.ErrNoRows) {
		rows, err = s.db.Query(ctx, queries.Get("topic-get"), name)
		if err != nil {
			return Topic{}, fmt.Errorf("archive topic %s: %w", name, err)
		}
		t, err = pgx.CollectExactlyOneRow(rows, scanTopic)
		if errors.Is(err, pgx.ErrNoRows) {
			return Topic{}, fmt.Errorf("%w: %q (tailor topic list shows the catalogue)", ErrUnknownTopic, name)
		}
	}
	if err != nil {
		return Topic{}, fmt.Errorf("archive topic %s: %w", name, err)
	}
	return t, nil
}

func scanTopic(r pgx.CollectableRow) (Topic, error) {
	var t Topic
	err := r.Scan(&t.Name, &t.Description, &t.DefaultStatus, &t.CreatedAt, &t.ArchivedAt)
	return t, err
}
