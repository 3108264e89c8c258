package opsstatus_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/opsstatus"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/internal/testenv/cdcrun"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/localstack"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/events/eventstest"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func config(env *testenv.Env) opsstatus.Config {
	return opsstatus.Config{
		Pool: env.Pool, Kinesis: env.Kinesis, DynamoDB: env.DynamoDB,
		Stream: env.Names.Stream, LeaseTable: env.Names.Leases, Slot: env.Names.Slot,
	}
}

// readUntil reads the report until ok holds or 60 s pass.
func readUntil(t *testing.T, cfg opsstatus.Config, what string, ok func(*opsstatus.Report) bool) *opsstatus.Report {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := opsstatus.Read(context.Background(), cfg)
		require.NoError(t, err)
		if ok(r) {
			return r
		}
		require.True(t, time.Now().Before(deadline), "%s: never seen; last report: %+v", what, r)
		time.Sleep(200 * time.Millisecond)
	}
}

// A stack with a consumer and CDC running, a queued job, a campaign in flight, dead letters
// and undelivered messages: each section shows what is there.
func TestRead_ReportsEachSection(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	cfg := config(env)

	// A consumer in this process, with a short lease so that it renews (and reports its lag)
	// every half second.
	consumer, err := app.Consumer(ctx, env.Backends, app.ConsumerOptions{
		Shards: 2, LeaseDuration: 1500 * time.Millisecond, NoTriggers: true, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	cdcrun.Start(t, env, nil)

	// One valid event (to the stream, read by the consumer), one refused at the API (dead
	// letter events.api) and a record on the stream that is no event (dead-lettered by the
	// consumer under events.stream).
	ing, err := app.Ingestor(ctx, env.Backends, 2)
	require.NoError(t, err)
	_, err = ing.Ingest(ctx, events.SourceAPI, [][]byte{eventstest.Sized("e-1", "c-1", time.Now(), 400), []byte(`{"nope":1}`)})
	require.NoError(t, err)
	p, err := app.Producer(ctx, env.Backends, 2)
	require.NoError(t, err)
	_, err = p.Send(ctx, []stream.Record{{PartitionKey: "c-2", Data: []byte("not json")}})
	require.NoError(t, err)
	_, err = env.Pool.Exec(ctx, `INSERT INTO dead_letters (source, reason, payload, replayed_at) VALUES ('events.api', 'old', '{}', now())`)
	require.NoError(t, err)

	// A River job queued for a minute with no worker for it.
	rc, err := jobs.NewInsertClient(env.Pool)
	require.NoError(t, err)
	_, err = rc.Insert(ctx, jobs.CampaignStartArgs{CampaignID: 4242}, &river.InsertOpts{ScheduledAt: time.Now().Add(-time.Minute)})
	require.NoError(t, err)
	_, err = rc.Insert(ctx, jobs.CampaignStartArgs{CampaignID: 4243}, nil)
	require.NoError(t, err)

	// A campaign a quarter through its audience, with a content source that fell back, and
	// its messages in each delivery state.
	var id int64
	require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment, status, audience_count, processed, fanout_done)
		VALUES ('spring', 'welcome', 1, '{}', 'true', 'running', 8, 2, true) RETURNING id`).Scan(&id))
	_, err = env.Pool.Exec(ctx, `INSERT INTO campaign_counters (campaign_id, key, n) VALUES ($1, 'rendered', 2), ($1, 'source:recs:fallback', 1), ($1, 'source:recs:stale', 1), ($1, 'source:hero:fetched', 2)`, id)
	require.NoError(t, err)
	_, err = env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email, not_before, lease_until) VALUES
		($1, 'ready', 'a@example.com', now() - interval '90 seconds', NULL),
		($1, 'leased', 'b@example.com', now() - interval '1 minute', now() + interval '1 minute'),
		($1, 'expired', 'c@example.com', now() - interval '1 minute', now() - interval '1 second'),
		($1, 'later', 'd@example.com', now() + interval '1 hour', NULL)`, id)
	require.NoError(t, err)

	r := readUntil(t, cfg, "both shards held by the consumer with their lag reported, the stream record dead-lettered, the slot active", func(r *opsstatus.Report) bool {
		if len(r.Stream.Shards) != 2 || len(r.DeadLetters.Sources) != 2 || !r.CDC.Active {
			return false
		}
		for _, s := range r.Stream.Shards {
			if !s.Held || s.IteratorAgeSeconds == nil {
				return false
			}
		}
		return true
	})
	require.Empty(t, r.Down)
	for _, e := range r.Endpoints {
		require.True(t, e.Up, e.Name)
	}
	for _, s := range r.Stream.Shards {
		require.Equal(t, consumer.Owner(), s.Owner, s.ShardID)
		require.GreaterOrEqual(t, *s.IteratorAgeSeconds, 0.0)
		require.WithinDuration(t, time.Now(), *s.LagReportedAt, 30*time.Second)
	}
	require.True(t, r.CDC.Exists)
	require.Equal(t, env.Names.Slot, r.CDC.Slot)
	require.GreaterOrEqual(t, r.CDC.RetainedWALBytes, r.CDC.LagBytes)
	require.NotNil(t, r.CDC.LagSeconds, "known while CDC streams")

	var start *opsstatus.JobKind
	for i, k := range r.Queues.Kinds {
		if k.Kind == "campaign.start" {
			start = &r.Queues.Kinds[i]
		}
	}
	require.NotNil(t, start, "the queued job's kind: %+v", r.Queues.Kinds)
	require.Equal(t, int64(1), start.Available, "%+v", *start)
	require.Equal(t, int64(1), start.Scheduled, "scheduled in the past, and no worker's scheduler to make it available")
	require.Equal(t, jobs.QueueCampaigns, start.Queue)
	require.InDelta(t, 60, start.OldestDueSeconds, 30)

	require.Len(t, r.Campaigns.Campaigns, 1)
	c := r.Campaigns.Campaigns[0]
	require.Equal(t, id, c.ID)
	require.Equal(t, "running", c.Status)
	require.Equal(t, 25.0, c.Percent)
	require.Equal(t, int64(2), c.Rendered)
	require.Equal(t, map[string]int64{"recs": 2}, c.Fallbacks, "fallback and stale content count, fetched does not")

	require.Equal(t, "events.api", r.DeadLetters.Sources[0].Source)
	require.Equal(t, int64(1), r.DeadLetters.Sources[0].Pending, "the replayed one is not pending")
	require.Equal(t, int64(2), r.DeadLetters.Sources[0].Total)
	require.Equal(t, events.SourceStream, r.DeadLetters.Sources[1].Source)
	require.Equal(t, int64(1), r.DeadLetters.Sources[1].Pending)

	require.Equal(t, int64(2), r.Senders.Ready, "the never-claimed one and the expired lease")
	require.Equal(t, int64(1), r.Senders.Leased)
	require.Equal(t, int64(1), r.Senders.Expired)
	require.Equal(t, int64(1), r.Senders.Waiting)
	require.InDelta(t, 90, r.Senders.OldestReadySeconds, 30)

	// The same Postgres reads, as the gauges tailor work exports.
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(opsstatus.NewCollector(env.Pool)))
	fams, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	require.Equal(t, 2.0, got["tailor_delivery_backlog_messages state=ready"])
	require.Equal(t, 1.0, got["tailor_delivery_backlog_messages state=expired"])
	require.Equal(t, 1.0, got["tailor_river_jobs kind=campaign.start queue="+jobs.QueueCampaigns+" state=scheduled"])
	require.Equal(t, 8.0, got[fmt.Sprintf("tailor_campaign_audience campaign=%d", id)])
	require.Equal(t, 1.0, got["tailor_dead_letters_pending source=events.api"])
	// Scrapes within CacheFor share one reading: a new dead letter shows at the next one.
	_, err = env.Pool.Exec(ctx, `INSERT INTO dead_letters (source, reason, payload) VALUES ('events.api', 'new', '{}')`)
	require.NoError(t, err)
	fams, err = reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == "tailor_dead_letters_pending" {
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == "events.api" {
					require.Equal(t, 1.0, m.GetGauge().GetValue(), "cached for %s", opsstatus.CacheFor)
				}
			}
		}
	}
}

// startDynalite runs a DynamoDB emulator of the test's own (the local stack's dynalite, from
// its npm install) and returns its URL and a stop that kills it.
func startDynalite(t *testing.T) (url string, stop func()) {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err)
	dir, err := localstack.EmulatorDir(context.Background(), t.Logf)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	cmd := exec.Command(node, "-r", filepath.Join(dir, "loopback.js"), filepath.Join(dir, "node_modules", "dynalite", "cli.js"), "--port", port)
	require.NoError(t, cmd.Start())
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	url = "http://127.0.0.1:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			return url, stop
		}
		require.True(t, time.Now().Before(deadline), "dynalite did not start: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
}

// An emulator that stops marks its endpoint and the sections read from it down, with the
// error; the others are still read.
func TestRead_StoppedEmulatorMarksItsSectionsDown(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	url, stop := startDynalite(t)
	cfg := config(env)
	cfg.Timeout = 3 * time.Second
	cfg.DynamoDB = dynamodb.NewFromConfig(env.AWS, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(url); o.RetryMaxAttempts = 1 })
	r, err := opsstatus.Read(context.Background(), cfg)
	require.NoError(t, err)
	require.Empty(t, r.Down, "every section up while the emulator runs: %+v", r)

	stop()
	r, err = opsstatus.Read(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"dynamodb", "stream"}, r.Down)
	// The error names the network failure: a new connection is refused, a kept-alive one from
	// the first read is cut (broken pipe, reset, EOF).
	const cut = `connection refused|broken pipe|connection reset|EOF`
	require.False(t, r.Endpoints[2].Up)
	require.Regexp(t, cut, r.Endpoints[2].Error)
	require.False(t, r.Stream.Up)
	require.Regexp(t, cut, r.Stream.Error)
	require.True(t, r.Queues.Up)
	require.True(t, r.Senders.Up)
	require.True(t, r.CDC.Up)
	var text strings.Builder
	require.NoError(t, opsstatus.WriteText(&text, r))
	require.Contains(t, text.String(), "DEGRADED: down dynamodb, stream")
	require.Regexp(t, `STREAM \S+  DOWN: .*(`+cut+`)`, text.String())

	// A Kinesis endpoint where nothing listens, and a worker's /metrics that does not answer.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	cfg = config(env)
	cfg.Kinesis = kinesis.NewFromConfig(env.AWS, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(dead); o.RetryMaxAttempts = 1 })
	cfg.MetricsURLs = []string{dead + "/metrics"}
	r, err = opsstatus.Read(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"kinesis", "breakers"}, r.Down, "a worker's metrics that do not answer mark the breakers down")
	require.Contains(t, r.Endpoints[1].Error, "connection refused")
}
