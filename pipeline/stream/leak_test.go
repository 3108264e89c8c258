package stream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
	"github.com/tailor-email/tailor/pipeline/stream"
)

// Not parallel: it runs before the parallel tests resume, so the goroutines it checks are its own.
func TestConsumer_StopLeavesNoGoroutinesBehind(t *testing.T) {
	e := eventpath.New(t, 2)
	ignore := goleak.IgnoreCurrent()
	var applied atomic.Int64
	proc, err := events.NewProcessor(events.ProcessorConfig{
		Sink: profile.NewWriter(e.Store, profile.WriterConfig{}), DeadLetters: e.DeadLetters,
		AfterApply: func(b events.AppliedBatch) { applied.Add(int64(len(b.Events))) },
	})
	require.NoError(t, err)
	c, err := stream.NewConsumer(e.Kinesis, e.DynamoDB, stream.ConsumerConfig{
		Stream: e.Names.Stream, LeaseTable: e.Names.Leases, PollInterval: 20 * time.Millisecond, Processor: proc,
	})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	var evs []events.Event
	for i := range 50 {
		evs = append(evs, profiletest.ProductView(fmt.Sprint("leak-", i), fmt.Sprint("c", i%5), time.Now().UTC()))
	}
	e.Send(t, evs)
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) { return applied.Load() == 50, fmt.Sprint(applied.Load()) })
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
