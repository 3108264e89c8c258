package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/events/eventstest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testAPIKey = "test-key-123"

// setupIngest serves POST /v1/events with bodyLimit (0: the default).
func setupIngest(t *testing.T, bodyLimit int64) (*eventpath.Env, *httptest.Server, *deadletter.Store) {
	t.Helper()
	e := eventpath.New(t, 1)
	h, err := httpapi.NewEventsHandler(httpapi.EventsConfig{
		Ingestor:  &events.Ingestor{Stream: e.Producer, DeadLetters: e.DeadLetters},
		BodyLimit: bodyLimit,
	})
	require.NoError(t, err)
	keys, err := httpapi.NewStaticKeys([]string{httpapi.HashKey(testAPIKey)})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", httpapi.RequireScope(keys, httpapi.ScopeEvents, h))
	srv := httptest.NewServer(mux) // loopback only
	t.Cleanup(srv.Close)
	return e, srv, e.DeadLetters
}

func post(t *testing.T, srv *httptest.Server, key string, body []byte) (int, httpapi.EventsResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/events", bytes.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var out httpapi.EventsResponse
	require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
	return res.StatusCode, out
}

func TestEventsHandler_AnswersPerEventAndDeadLettersEveryRejection(t *testing.T) {
	t.Parallel()
	e, srv, dls := setupIngest(t, 4<<20)
	now := time.Now().UTC()
	ts := now.Add(-time.Minute).Format(time.RFC3339)
	valid := func(id string) string {
		return `{"event_id":"` + id + `","customer_id":"c1","type":"product_view","timestamp":"` + ts + `","properties":{"product_id":"p"}}`
	}
	bad := []struct{ raw, reason string }{
		{`{"event_id":"b1","customer_id":"c1","type":"product_view","timestamp":"` + ts + `"}`, "properties.product_id: required"},
		{`{"event_id":"b2","customer_id":"c1","type":"teleport","timestamp":"` + ts + `","properties":{}}`, `type: unknown event type "teleport"`},
		{`{"event_id":"b3","customer_id":"c1","type":"product_view","timestamp":"` + now.Add(time.Hour).Format(time.RFC3339) + `","properties":{"product_id":"p"}}`, "in the future"},
		{`{"event_id":"b4","customer_id":"c1","type":"product_view","timestamp":"1990-01-01T00:00:00Z","properties":{"product_id":"p"}}`, "is older than"},
		{`{"event_id":5,"customer_id":"c1","type":"product_view","timestamp":"` + ts + `","properties":{"product_id":"p"}}`, "event_id: must be a string"},
		{`{"event_id":"b6","customer_id":"c1","type":"product_view","timestamp":"` + ts + `","properties":{"product_id":"p","category":"` + strings.Repeat("x", 1<<20) + `"}}`, "the limit is 32768"},
		{"{\"event_id\":\"b7\",\"customer_id\":\"c1\",\"type\":\"search\",\"timestamp\":\"" + ts + "\",\"properties\":{\"query\":\"caf\xe9\"}}", "not valid UTF-8"},
		{`{"event_id":"b8","customer_id":"c1","type":"add_to_cart","timestamp":"` + ts + `","properties":{"product_id":"p","quantity":"two"}}`, "properties.quantity: must be an integer"},
	}
	parts := []string{valid("ok1")}
	for _, b := range bad {
		parts = append(parts, b.raw)
	}
	parts = append(parts, valid("ok2"))
	code, res := post(t, srv, testAPIKey, []byte("["+strings.Join(parts, ",")+"]"))
	require.Equal(t, http.StatusMultiStatus, code)
	require.Equal(t, 2, res.Accepted)
	require.Equal(t, len(bad), res.Rejected)
	require.Len(t, res.Results, len(parts))
	require.Equal(t, events.StatusAccepted, res.Results[0].Status)
	require.Equal(t, "ok1", res.Results[0].EventID)
	require.Equal(t, events.StatusAccepted, res.Results[len(parts)-1].Status)
	for i, b := range bad {
		r := res.Results[i+1]
		require.Equal(t, events.StatusRejected, r.Status, "event %d", i+1)
		require.Contains(t, r.Reason, b.reason, "event %d", i+1)
	}
	// Every rejection is a dead letter with the raw payload and the reason.
	rows, err := dls.List(t.Context(), deadletter.Filter{Source: events.SourceAPI, Limit: 100})
	require.NoError(t, err)
	require.Len(t, rows, len(bad))
	byReason := map[string][]byte{}
	for _, r := range rows {
		byReason[r.Reason] = r.Payload
	}
	for _, b := range bad {
		found := false
		for reason, payload := range byReason {
			if strings.Contains(reason, b.reason) {
				found = true
				require.Equal(t, b.raw, string(payload), "the dead letter keeps the raw bytes")
			}
		}
		require.True(t, found, "no dead letter for %q", b.reason)
	}

	// The accepted events reach profiles through the consumer.
	var applied atomic.Int64
	e.StartConsumer(t, eventpath.Consumer{AfterApply: func(b events.AppliedBatch) { applied.Add(int64(len(b.Events))) }})
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) { return applied.Load() == 2, fmt.Sprint(applied.Load(), " applied") })
	p, err := e.Store.Get(t.Context(), "c1")
	require.NoError(t, err)
	require.Equal(t, int64(2), p.Behaviour.Counts[events.TypeProductView])
}

func TestEventsHandler_RejectsWholeBodies(t *testing.T) {
	t.Parallel()
	_, srv, dls := setupIngest(t, 4<<20)
	code, res := post(t, srv, "", []byte(`{}`))
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, res.Error, "API key")
	code, _ = post(t, srv, "wrong-key", []byte(`{}`))
	require.Equal(t, http.StatusUnauthorized, code)

	code, res = post(t, srv, testAPIKey, []byte(`[{"event_id":"x",`))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, res.Error, "malformed JSON")

	code, res = post(t, srv, testAPIKey, []byte("\xff\xfe{not utf8}"))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, res.Error, "JSON object")

	code, res = post(t, srv, testAPIKey, append([]byte(`[`), bytes.Repeat([]byte(" "), 5<<20)...))
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	require.Contains(t, res.Error, "larger than")

	code, res = post(t, srv, testAPIKey, []byte(`{"event_id":"one","customer_id":"c","type":"search","timestamp":"nope","properties":{"query":"q"}}`))
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Equal(t, 1, res.Rejected)
	require.Contains(t, res.Results[0].Reason, "timestamp: must be RFC 3339")
	require.Equal(t, "one", res.Results[0].EventID)

	rows, err := dls.List(t.Context(), deadletter.Filter{Source: events.SourceAPI})
	require.NoError(t, err)
	require.Len(t, rows, 4, "bad JSON, non-UTF-8, too large and the invalid event are dead letters; unauthenticated calls are not")
}

func TestEventsHandler_NDJSONBatchRejectsBadLinesOneByOne(t *testing.T) {
	t.Parallel()
	_, srv, dls := setupIngest(t, 4<<20)
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	body := `{"event_id":"n1","customer_id":"c","type":"search","timestamp":"` + ts + `","properties":{"query":"q"}}` + "\n" +
		`{"event_id":"n2","customer_id":"c","type":` + "\n" +
		`{"event_id":"n3","customer_id":"c","type":"email_open","timestamp":"` + ts + `","properties":{"campaign_id":"k"}}` + "\n"
	code, res := post(t, srv, testAPIKey, []byte(body))
	require.Equal(t, http.StatusMultiStatus, code)
	require.Equal(t, 2, res.Accepted)
	require.Equal(t, events.StatusRejected, res.Results[1].Status)
	require.Contains(t, res.Results[1].Reason, "malformed JSON")
	rows, err := dls.List(t.Context(), deadletter.Filter{Source: events.SourceAPI})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, `{"event_id":"n2","customer_id":"c","type":`, string(rows[0].Payload))
}

// maximalBatch is a JSON array of events.MaxBatchEvents events of exactly events.MaxEventBytes
// each, padded with white space to size bytes, and the events' customers.
func maximalBatch(t *testing.T, size int) ([]byte, []string) {
	t.Helper()
	ts := time.Now().UTC().Add(-time.Minute)
	customers := make([]string, 10)
	for i := range customers {
		customers[i] = fmt.Sprintf("max-c%d", i)
	}
	parts := make([][]byte, events.MaxBatchEvents)
	for i := range parts {
		parts[i] = eventstest.Sized(fmt.Sprintf("max-%03d", i), customers[i%len(customers)], ts, events.MaxEventBytes)
		require.Len(t, parts[i], events.MaxEventBytes)
	}
	body := append(append([]byte("["), bytes.Join(parts, []byte(","))...), ']')
	require.LessOrEqual(t, len(body), size, "the batch itself fits")
	return append(body, bytes.Repeat([]byte(" "), size-len(body))...), customers
}

func TestEventsHandler_AcceptsAFullBatchOfMaximalEventsEndToEnd(t *testing.T) {
	t.Parallel()
	e, srv, dls := setupIngest(t, 0)
	body, customers := maximalBatch(t, httpapi.EventsBodyLimitDefault)
	require.Len(t, body, events.MaxBatchBytes, "a body of exactly the default limit")
	code, res := post(t, srv, testAPIKey, body)
	require.Equal(t, http.StatusOK, code, "error %q", res.Error)
	require.Equal(t, events.MaxBatchEvents, res.Accepted)
	require.Zero(t, res.Rejected)

	// Every event reaches its profile; the consumer dead-letters none (their normalised form
	// is longer than the 32 KiB they were sent as).
	var applied atomic.Int64
	e.StartConsumer(t, eventpath.Consumer{AfterApply: func(b events.AppliedBatch) { applied.Add(int64(len(b.Events))) }})
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		return applied.Load() == events.MaxBatchEvents, fmt.Sprint(applied.Load(), " applied")
	})
	rows, err := dls.List(t.Context(), deadletter.Filter{Limit: 10})
	require.NoError(t, err)
	require.Empty(t, rows, "no dead letters, on either side of the stream")
	profiles, err := e.Store.BatchGet(t.Context(), customers)
	require.NoError(t, err)
	require.Len(t, profiles, len(customers))
	for _, c := range customers {
		require.Equal(t, int64(events.MaxBatchEvents/len(customers)), profiles[c].Behaviour.Counts[events.TypeCustom], c)
	}
}

func TestEventsHandler_RefusesABodyJustOverTheLimit(t *testing.T) {
	t.Parallel()
	_, srv, dls := setupIngest(t, 0)
	body, _ := maximalBatch(t, httpapi.EventsBodyLimitDefault+1)
	code, res := post(t, srv, testAPIKey, body)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	require.Equal(t, fmt.Sprintf("body larger than %d bytes: split the batch", httpapi.EventsBodyLimitDefault), res.Error)
	rows, err := dls.List(t.Context(), deadletter.Filter{Source: events.SourceAPI})
	require.NoError(t, err)
	require.Len(t, rows, 1, "the refused body is a dead letter")
	require.Len(t, rows[0].Payload, httpapi.EventsBodyLimitDefault, "what was read, up to the limit")
}
