package opsstatus

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tailor-email/tailor/internal/sqlfile"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/stream"
	"github.com/tailor-email/tailor/templates"
)

//go:embed queries.sql
var queryFiles embed.FS

var queries = sqlfile.MustLoad(queryFiles, "queries.sql")

// Defaults for Config.
const (
	TimeoutDefault      = 5 * time.Second
	CampaignsMaxDefault = 50
)

// Config says where to read from. Zero values mean defaults.
type Config struct {
	Pool     *pgxpool.Pool    // Postgres; required
	Kinesis  *kinesis.Client  // required
	DynamoDB *dynamodb.Client // required
	// Stream, LeaseTable and Slot name the event stream, its lease table and the CDC slot.
	Stream, LeaseTable, Slot string
	// Endpoints are the addresses shown for postgres, kinesis and dynamodb (display only).
	Endpoints map[string]string
	// MetricsURLs are /metrics URLs of tailor work processes, scraped for
	// tailor_content_breaker_state; none: the breakers section says where to look.
	MetricsURLs []string
	// Timeout bounds each section's reads. Default 5s.
	Timeout time.Duration
	// CampaignsMax bounds the campaigns listed. Default 50.
	CampaignsMax int
	// HTTPClient scrapes MetricsURLs. Default: a client with Timeout.
	HTTPClient *http.Client
}

func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, TimeoutDefault)
	c.CampaignsMax = cmp.Or(c.CampaignsMax, CampaignsMaxDefault)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.Timeout}
	}
	return c
}

// Section is what every part of the report has: whether it could be read, and why not.
type Section struct {
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

func (s *Section) set(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		err = fmt.Errorf("%w (the schema is not migrated: run tailor migrate)", err)
	}
	s.Up = err == nil
	if err != nil {
		s.Error = err.Error()
	}
}

// Report is one reading of everything. Its JSON form is tailor status --json; the field names
// are stable (documented in the README).
type Report struct {
	At          time.Time          `json:"at"`
	Down        []string           `json:"down"` // sections that could not be read; empty when healthy
	Endpoints   []Endpoint         `json:"endpoints"`
	Stream      StreamSection      `json:"stream"`
	CDC         CDCSection         `json:"cdc"`
	Queues      QueuesSection      `json:"queues"`
	Campaigns   CampaignsSection   `json:"campaigns"`
	DeadLetters DeadLettersSection `json:"dead_letters"`
	Breakers    BreakersSection    `json:"breakers"`
	Senders     SendersSection     `json:"senders"`
}

// Endpoint is one backend and whether it answered.
type Endpoint struct {
	Section
	Name      string  `json:"name"` // postgres, kinesis, dynamodb
	Address   string  `json:"address,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
}

// StreamSection is the Kinesis stream's shards as the lease table sees them.
type StreamSection struct {
	Section
	Stream string  `json:"stream"`
	Shards []Shard `json:"shards"`
}

// Shard is one shard's lease.
type Shard struct {
	ShardID  string `json:"shard_id"`
	Owner    string `json:"owner,omitempty"` // empty: free
	Held     bool   `json:"held"`            // the owner's lease has not expired
	Finished bool   `json:"finished"`        // read to its end (a closed parent)
	// Checkpoint is the last sequence number whose effects are durable (SHARD_END when finished).
	Checkpoint     string     `json:"checkpoint,omitempty"`
	CheckpointedAt *time.Time `json:"checkpointed_at,omitempty"`
	// IteratorAgeSeconds is the owner's last MillisBehindLatest in seconds, reported at
	// LagReportedAt (null: never reported).
	IteratorAgeSeconds *float64   `json:"iterator_age_seconds"`
	LagReportedAt      *time.Time `json:"lag_reported_at,omitempty"`
}

// CDCSection is the replication slot's state (pg_replication_slots).
type CDCSection struct {
	Section
	Slot         string `json:"slot"`
	Exists       bool   `json:"exists"`
	Active       bool   `json:"active"`
	ConfirmedLSN string `json:"confirmed_flush_lsn,omitempty"`
	LagBytes     int64  `json:"lag_bytes"`
	// LagSeconds is the walsender's flush_lag (how long written WAL took to be confirmed
	// lately): null while no CDC process streams, when Postgres cannot know it.
	LagSeconds       *float64 `json:"lag_seconds"`
	RetainedWALBytes int64    `json:"retained_wal_bytes"`
	WALStatus        string   `json:"wal_status,omitempty"`
}

// QueuesSection is River's unfinished jobs.
type QueuesSection struct {
	Section
	Kinds []JobKind `json:"kinds"`
}

// JobKind is one queue and kind's unfinished jobs.
type JobKind struct {
	Queue                 string  `json:"queue"`
	Kind                  string  `json:"kind"`
	Available             int64   `json:"available"`
	Scheduled             int64   `json:"scheduled"`
	Retryable             int64   `json:"retryable"`
	Running               int64   `json:"running"`
	OldestDueSeconds      float64 `json:"oldest_due_seconds"`
	LongestRunningSeconds float64 `json:"longest_running_seconds"`
}

// CampaignsSection is the campaigns not settled yet.
type CampaignsSection struct {
	Section
	Campaigns []Campaign `json:"campaigns"`
}

// Campaign is one campaign in flight with its progress (the counters of jobs.Progress).
type Campaign struct {
	ID         int64   `json:"id"`
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	Status     string  `json:"status"`
	Audience   int64   `json:"audience"`
	Processed  int64   `json:"processed"`
	FanoutDone bool    `json:"fanout_done"`
	Percent    float64 `json:"percent"` // processed / audience (0 while the audience is unknown)
	Rendered   int64   `json:"rendered"`
	Excluded   int64   `json:"excluded"`
	Skipped    int64   `json:"skipped"`
	Failed     int64   `json:"failed"`
	// Fallbacks counts rendered messages whose content source fell back (stale or default
	// content), by source name.
	Fallbacks map[string]int64 `json:"fallbacks,omitempty"`
}

// DeadLettersSection is the dead letters by source.
type DeadLettersSection struct {
	Section
	Sources []DeadLetters `json:"sources"`
}

// DeadLetters counts one source's dead letters.
type DeadLetters struct {
	Source  string    `json:"source"`
	Pending int64     `json:"pending"` // not replayed
	Total   int64     `json:"total"`
	Newest  time.Time `json:"newest"`
}

// BreakersSection is the content sources' circuit breakers. Breakers live in each rendering
// process; they are read from the /metrics of Config.MetricsURLs.
type BreakersSection struct {
	Section
	From     string    `json:"from"` // where the states were read, or where to look
	Breakers []Breaker `json:"breakers"`
}

// Breaker is one content source's breaker in one process.
type Breaker struct {
	Source   string `json:"source"`   // template/source
	State    string `json:"state"`    // closed, half-open, open
	Instance string `json:"instance"` // the metrics URL it came from
}

// SendersSection is the senders' backlog of rendered messages.
type SendersSection struct {
	Section
	Ready              int64   `json:"ready"`
	Leased             int64   `json:"leased"`
	Expired            int64   `json:"expired"`
	Waiting            int64   `json:"waiting"`
	OldestReadySeconds float64 `json:"oldest_ready_seconds"`
}

// Read reads every section concurrently, each within cfg.Timeout. It returns an error only for
// a Config it cannot use; a backend that is down marks its sections down in the report.
func Read(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Pool == nil || cfg.Kinesis == nil || cfg.DynamoDB == nil {
		return nil, errors.New("opsstatus: Pool, Kinesis and DynamoDB are required")
	}
	r := &Report{At: time.Now().UTC(), Down: []string{}}
	r.Endpoints = []Endpoint{{Name: "postgres"}, {Name: "kinesis"}, {Name: "dynamodb"}}
	for i := range r.Endpoints {
		r.Endpoints[i].Address = cfg.Endpoints[r.Endpoints[i].Name]
	}
	// The probes name the deployment's own stream and lease table (not List*), so an operator
	// role scoped to those resources can run status; a resource that does not exist yet still
	// proves the endpoint answers.
	probes := []func(context.Context) error{
		func(ctx context.Context) error { return cfg.Pool.Ping(ctx) },
		func(ctx context.Context) error {
			_, err := cfg.Kinesis.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(cfg.Stream)})
			var notFound *ktypes.ResourceNotFoundException
			if errors.As(err, &notFound) {
				return nil
			}
			return err
		},
		func(ctx context.Context) error {
			_, err := cfg.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(cfg.LeaseTable)})
			var notFound *dtypes.ResourceNotFoundException
			if errors.As(err, &notFound) {
				return nil
			}
			return err
		},
	}
	type part struct {
		name string
		sec  *Section
		read func(context.Context) error
	}
	parts := []part{
		{"stream", &r.Stream.Section, func(ctx context.Context) error { return readStream(ctx, cfg, &r.Stream) }},
		{"cdc", &r.CDC.Section, func(ctx context.Context) error { return readCDC(ctx, cfg, &r.CDC) }},
		{"queues", &r.Queues.Section, func(ctx context.Context) error { return readQueues(ctx, cfg.Pool, &r.Queues) }},
		{"campaigns", &r.Campaigns.Section, func(ctx context.Context) error { return readCampaigns(ctx, cfg, &r.Campaigns) }},
		{"dead_letters", &r.DeadLetters.Section, func(ctx context.Context) error { return readDeadLetters(ctx, cfg.Pool, &r.DeadLetters) }},
		{"breakers", &r.Breakers.Section, func(ctx context.Context) error { return readBreakers(ctx, cfg, &r.Breakers) }},
		{"senders", &r.Senders.Section, func(ctx context.Context) error { return readSenders(ctx, cfg.Pool, &r.Senders) }},
	}
	var wg sync.WaitGroup
	for i, probe := range probes {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			began := time.Now()
			err := probe(pctx)
			r.Endpoints[i].LatencyMS = float64(time.Since(began).Microseconds()) / 1000
			r.Endpoints[i].set(err)
		})
	}
	for _, p := range parts {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			p.sec.set(p.read(pctx))
		})
	}
	wg.Wait()
	for _, e := range r.Endpoints {
		if !e.Up {
			r.Down = append(r.Down, e.Name)
		}
	}
	for _, p := range parts {
		if !p.sec.Up {
			r.Down = append(r.Down, p.name)
		}
	}
	return r, nil
}

func readStream(ctx context.Context, cfg Config, s *StreamSection) error {
	s.Stream, s.Shards = cfg.Stream, []Shard{}
	leases, err := stream.NewLeaseTable(cfg.DynamoDB, cfg.LeaseTable).List(ctx)
	var notFound *dtypes.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return nil // no lease table: no consumer has run yet (a state, not an outage)
	}
	if err != nil {
		return err
	}
	now := time.Now()
	for _, l := range leases {
		sh := Shard{ShardID: l.ShardID, Owner: l.Owner, Held: l.Held(now), Finished: l.Finished(), Checkpoint: l.Checkpoint}
		if l.CheckpointedAt > 0 {
			sh.CheckpointedAt = ptr(time.UnixMilli(l.CheckpointedAt).UTC())
		}
		if l.LagReportedAt > 0 {
			sh.IteratorAgeSeconds = ptr(float64(l.IteratorAgeMillis) / 1000)
			sh.LagReportedAt = ptr(time.UnixMilli(l.LagReportedAt).UTC())
		}
		s.Shards = append(s.Shards, sh)
	}
	slices.SortFunc(s.Shards, func(a, b Shard) int { return cmp.Compare(a.ShardID, b.ShardID) })
	return nil
}

func ptr[T any](v T) *T { return &v }

func readCDC(ctx context.Context, cfg Config, s *CDCSection) error {
	s.Slot = cfg.Slot
	st, err := cdc.ReadStatus(ctx, cfg.Pool, cfg.Slot)
	if errors.Is(err, cdc.ErrNoSlot) {
		// No slot is a state, not an outage: CDC has not run yet (or was dropped).
		return nil
	}
	if err != nil {
		return err
	}
	s.Exists, s.Active, s.ConfirmedLSN = true, st.Active, st.ConfirmedFlushLSN
	s.LagBytes, s.RetainedWALBytes, s.WALStatus = st.LagBytes, st.RetainedBytes, st.WALStatus
	if st.Active {
		s.LagSeconds = ptr(st.LagSeconds)
	}
	return nil
}

func readQueues(ctx context.Context, db *pgxpool.Pool, s *QueuesSection) error {
	s.Kinds = []JobKind{}
	rows, err := db.Query(ctx, queries.Get("river-queues"))
	if err != nil {
		return fmt.Errorf("river jobs: %w", err)
	}
	var k JobKind
	_, err = pgx.ForEachRow(rows, []any{&k.Queue, &k.Kind, &k.Available, &k.Scheduled, &k.Retryable, &k.Running, &k.OldestDueSeconds, &k.LongestRunningSeconds},
		func() error { s.Kinds = append(s.Kinds, k); return nil })
	if err != nil {
		return fmt.Errorf("river jobs: %w", err)
	}
	return nil
}

func readCampaigns(ctx context.Context, cfg Config, s *CampaignsSection) error {
	s.Campaigns = []Campaign{}
	rows, err := cfg.Pool.Query(ctx, queries.Get("campaigns-in-flight"), cfg.CampaignsMax)
	if err != nil {
		return fmt.Errorf("campaigns: %w", err)
	}
	var c Campaign
	var counters map[string]int64
	_, err = pgx.ForEachRow(rows, []any{&c.ID, &c.Name, &c.Kind, &c.Status, &c.Audience, &c.Processed, &c.FanoutDone, &counters}, func() error {
		c.Rendered, c.Excluded = counters[jobs.MessageRendered], counters[jobs.MessageExcluded]
		c.Skipped, c.Failed = counters[jobs.MessageSkipped], counters[jobs.MessageFailed]
		c.Percent, c.Fallbacks = 0, nil
		if c.Audience > 0 {
			c.Percent = min(100, 100*float64(c.Processed)/float64(c.Audience))
		}
		// The counters' keys are jobs.Progress's: read them through it.
		for name, outcomes := range (&jobs.Progress{Counters: counters}).Sources() {
			if n := outcomes[templates.OutcomeFallback] + outcomes[templates.OutcomeStale]; n > 0 {
				if c.Fallbacks == nil {
					c.Fallbacks = map[string]int64{}
				}
				c.Fallbacks[name] = n
			}
		}
		s.Campaigns = append(s.Campaigns, c)
		counters = nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("campaigns: %w", err)
	}
	return nil
}

func readDeadLetters(ctx context.Context, db *pgxpool.Pool, s *DeadLettersSection) error {
	s.Sources = []DeadLetters{}
	rows, err := db.Query(ctx, queries.Get("dead-letters"))
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	var d DeadLetters
	_, err = pgx.ForEachRow(rows, []any{&d.Source, &d.Pending, &d.Total, &d.Newest}, func() error {
		d.Newest = d.Newest.UTC()
		s.Sources = append(s.Sources, d)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

func readSenders(ctx context.Context, db *pgxpool.Pool, s *SendersSection) error {
	if err := db.QueryRow(ctx, queries.Get("sender-backlog")).Scan(&s.Ready, &s.Leased, &s.Expired, &s.Waiting, &s.OldestReadySeconds); err != nil {
		return fmt.Errorf("sender backlog: %w", err)
	}
	return nil
}

// breakerMetric is the gauge the rendering processes export (templates/rendermetrics).
const breakerMetric = "tailor_content_breaker_state"

// BreakerStateNames are the values of tailor_content_breaker_state.
var BreakerStateNames = map[int]string{0: "closed", 1: "half-open", 2: "open"}

func readBreakers(ctx context.Context, cfg Config, s *BreakersSection) error {
	s.Breakers = []Breaker{}
	if len(cfg.MetricsURLs) == 0 {
		s.From = "not scraped: breakers live in each tailor work process; pass --metrics-url of their --metrics-addr, or see " + breakerMetric + " in Prometheus"
		return nil
	}
	s.From = strings.Join(cfg.MetricsURLs, ", ")
	var errs []error
	for _, u := range cfg.MetricsURLs {
		bs, err := scrapeBreakers(ctx, cfg.HTTPClient, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		s.Breakers = append(s.Breakers, bs...)
	}
	slices.SortFunc(s.Breakers, func(a, b Breaker) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Instance, b.Instance))
	})
	return errors.Join(errs...)
}

func scrapeBreakers(ctx context.Context, hc *http.Client, url string) ([]Breaker, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	var out []Breaker
	if fam, ok := fams[breakerMetric]; ok {
		for _, m := range fam.GetMetric() {
			b := Breaker{Instance: url, State: "unknown"}
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" {
					b.Source = l.GetValue()
				}
			}
			if name, ok := BreakerStateNames[int(m.GetGauge().GetValue())]; ok {
				b.State = name
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }
