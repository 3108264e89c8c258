package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Not parallel: it runs before the parallel tests resume, so the goroutines it checks are its own.
func TestConsumer_StopLeavesNoGoroutinesBehind(t *testing.T) {
	e := setupStream(t, 2)
	ignore := goleak.IgnoreCurrent()
	var applied atomic.Int64
	c, err := NewConsumer(e.Kinesis, e.DynamoDB, ConsumerConfig{
		Stream: e.Names.Stream, LeaseTable: e.Names.Leases, PollInterval: 20 * time.Millisecond,
		Sink: NewProfileWriter(e.store, ProfileWriterConfig{}), AfterApply: func(b AppliedBatch) { applied.Add(int64(len(b.Events))) },
	})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	var events []Event
	for i := range 50 {
		events = append(events, productView(fmt.Sprint("leak-", i), fmt.Sprint("c", i%5), time.Now().UTC()))
	}
	e.send(t, events)
	eventually(t, 30*time.Second, func() (bool, string) { return applied.Load() == 50, fmt.Sprint(applied.Load()) })
	stopCtx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.Stop(stopCtx))
	require.NoError(t, <-errc)
	require.Empty(t, c.Held())
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}
