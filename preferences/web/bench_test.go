package web_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/testenv/cdcrun"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/profile"
)

const benchClients = 4

// seedCustomers adds n customers named prefix-0 ... prefix-(n-1).
func seedCustomers(b *testing.B, s *server, prefix string, n int) {
	b.Helper()
	_, err := s.env.Pool.Exec(context.Background(), `INSERT INTO customers (id, email, locale)
		SELECT $1 || '-' || i, $1 || '-' || i || '@example.com', 'en' FROM generate_series(0, $2 - 1) AS i`, prefix, n)
	require.NoError(b, err)
}

// fanOut runs n jobs on benchClients goroutines and returns each job's latency in ms.
func fanOut(b *testing.B, n int, job func(i int) error) []float64 {
	b.Helper()
	lat := make([]float64, n)
	errs := make(chan error, benchClients)
	var wg sync.WaitGroup
	for c := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += benchClients {
				start := time.Now()
				if err := job(i); err != nil {
					errs <- err
					return
				}
				lat[i] = float64(time.Since(start).Microseconds()) / 1000
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(b, <-errs)
	return lat
}

func percentile(v []float64, p int) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[min(len(s)*p/100, len(s)-1)]
}

// timedStore records when CDC made each subscriptions entry durable on a profile, by customer
// and the entry's updated_at (the webhook's occurred_at), so each webhook is matched exactly.
type timedStore struct {
	*profile.Store
	mu      sync.Mutex
	applied map[string]time.Time
}

func (s *timedStore) ApplyEntry(ctx context.Context, id string, kind profile.EntryKind, key string, lsn uint64, cols map[string]any) (bool, error) {
	ok, err := s.Store.ApplyEntry(ctx, id, kind, key, lsn, cols)
	if err == nil && kind == profile.Subscriptions && cols != nil {
		if at, perr := time.Parse(time.RFC3339Nano, fmt.Sprint(cols["updated_at"])); perr == nil {
			s.mu.Lock()
			if _, seen := s.applied[id+"|"+at.UTC().Format(time.RFC3339Nano)]; !seen {
				s.applied[id+"|"+at.UTC().Format(time.RFC3339Nano)] = time.Now()
			}
			s.mu.Unlock()
		}
	}
	return ok, err
}

// BenchmarkWebhook measures POST /v1/webhooks/preferences on the local stack, signatures
// checked, from 4 concurrent clients over loopback HTTP:
//
//   - changes/s, p50_ms, p99_ms: 2 000 change sets (one topic and one consent each, 500
//     customers) sent as fast as the clients go; latency is the request's, to the 200;
//   - to_profile_p50_ms, to_profile_p99_ms: from sending a webhook to its subscription being
//     durable on the DynamoDB profile through CDC, at a steady 100 change sets/s for 5 s.
//
// Run it with: go test ./preferences/web -run '^$' -bench BenchmarkWebhook -benchtime 1x
func BenchmarkWebhook(b *testing.B) {
	const n, customers, rate, seconds = 2000, 500, 100, 5
	s := setup(b)
	ctx := context.Background()
	profiles, err := app.Profiles(ctx, s.env.Backends)
	require.NoError(b, err)
	store := &timedStore{Store: profiles, applied: map[string]time.Time{}}
	c, err := cdc.New(cdc.Config{DatabaseURL: s.env.DatabaseURL, Slot: s.env.Names.Slot, Publication: s.env.Names.Publication,
		StandbyTimeout: time.Second, Logger: discard}, store)
	require.NoError(b, err)
	cctx, stop := context.WithCancel(ctx)
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(cctx) }()
	defer func() { stop(); <-cdone }()
	eventpath.Eventually(b, time.Minute, func() (bool, string) { return c.Active() && c.Confirmed() > 0, "cdc not streaming" })

	send := func(id, customer string, at time.Time, st string) error {
		body := []byte(`{"customer_id":"` + customer + `","occurred_at":"` + at.Format(time.RFC3339Nano) + `","topics":{"news":"` + st +
			`"},"consents":[{"purpose":"email_marketing","granted":true,"source":"bench"}]}`)
		h, err := signedHeaders(id, body)
		if err != nil {
			return err
		}
		req, err := http.NewRequest(http.MethodPost, s.srv.URL+"/v1/webhooks/preferences", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header = h
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("webhook %s: %d", id, res.StatusCode)
		}
		return nil
	}
	statuses := []string{"subscribed", "unsubscribed"}
	var throughput float64
	var lat, toProfile []float64
	for iter := range b.N {
		b.StopTimer()
		prefix := fmt.Sprintf("w%d", iter)
		seedCustomers(b, s, prefix, customers)
		base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
		b.StartTimer()
		began := time.Now()
		lat = append(lat, fanOut(b, n, func(i int) error {
			return send(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("%s-%d", prefix, i%customers), base.Add(time.Duration(i)*time.Microsecond), statuses[i%2])
		})...)
		throughput = float64(n) / time.Since(began).Seconds()

		// Let CDC drain the burst, then a steady load: webhook to profile.
		b.StopTimer()
		lsn := cdcrun.WALPosition(b, s.env)
		eventpath.Eventually(b, 5*time.Minute, func() (bool, string) { return cdcrun.CaughtUp(ctx, s.env, lsn) })
		b.StartTimer()
		total := rate * seconds
		sent := make([]time.Time, total)
		keys := make([]string, total)
		start := time.Now()
		fanOut(b, total, func(i int) error {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			at := time.Now().UTC().Truncate(time.Microsecond)
			customer := fmt.Sprintf("%s-%d", prefix, i%customers)
			keys[i], sent[i] = customer+"|"+at.Format(time.RFC3339Nano), time.Now()
			return send(fmt.Sprintf("%s-steady-%d", prefix, i), customer, at, statuses[(i/customers)%2])
		})
		eventpath.Eventually(b, time.Minute, func() (bool, string) {
			store.mu.Lock()
			defer store.mu.Unlock()
			missing := 0
			for _, k := range keys {
				if _, ok := store.applied[k]; !ok {
					missing++
				}
			}
			return missing == 0, fmt.Sprintf("%d of %d changes not on their profile yet", missing, total)
		})
		store.mu.Lock()
		for i, k := range keys {
			toProfile = append(toProfile, float64(store.applied[k].Sub(sent[i]).Microseconds())/1000)
		}
		store.mu.Unlock()
	}
	b.StopTimer()
	b.ReportMetric(throughput, "changes/s")
	b.ReportMetric(percentile(lat, 50), "p50_ms")
	b.ReportMetric(percentile(lat, 99), "p99_ms")
	b.ReportMetric(percentile(toProfile, 50), "to_profile_p50_ms")
	b.ReportMetric(percentile(toProfile, 99), "to_profile_p99_ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkOneClickUnsubscribe measures RFC 8058 one-click POSTs (the exact body, token
// verified, one transaction with its audit row) from 4 concurrent clients: 2 000 recipients,
// half topic-scoped and half global unsubscribes; p50_ms and p99_ms to the 200.
//
// Run it with: go test ./preferences/web -run '^$' -bench BenchmarkOneClickUnsubscribe -benchtime 1x
func BenchmarkOneClickUnsubscribe(b *testing.B) {
	const n = 2000
	s := setup(b)
	var lat []float64
	var rate float64
	for iter := range b.N {
		b.StopTimer()
		prefix := fmt.Sprintf("u%d", iter)
		seedCustomers(b, s, prefix, n)
		urls := make([]string, n)
		for i := range urls {
			topic := ""
			if i%2 == 0 {
				topic = "news"
			}
			urls[i], _ = s.links.For(1, topic, fmt.Sprintf("%s-%d", prefix, i))
		}
		b.StartTimer()
		began := time.Now()
		lat = append(lat, fanOut(b, n, func(i int) error {
			res, err := http.Post(urls[i], "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("one-click: %d", res.StatusCode)
			}
			return nil
		})...)
		rate = float64(n) / time.Since(began).Seconds()
	}
	b.StopTimer()
	var suppressed int
	require.NoError(b, s.env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM suppressions`).Scan(&suppressed))
	require.Equal(b, b.N*n/2, suppressed, "every global unsubscribe took effect")
	b.ReportMetric(rate, "unsubscribes/s")
	b.ReportMetric(percentile(lat, 50), "p50_ms")
	b.ReportMetric(percentile(lat, 99), "p99_ms")
	b.ReportMetric(0, "ns/op")
}
