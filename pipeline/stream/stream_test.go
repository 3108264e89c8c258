package stream_test

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
	"github.com/tailor-email/tailor/pipeline/stream"
)

// appliedLog records which event ids the consumers made durable, in order per profile.
type appliedLog struct {
	mu      sync.Mutex
	ids     map[string]bool
	order   map[string][]string // profile id -> event ids in apply order (first time only)
	byShard map[string]int
}

func newAppliedLog() *appliedLog {
	return &appliedLog{ids: map[string]bool{}, order: map[string][]string{}, byShard: map[string]int{}}
}

func (l *appliedLog) hook(b events.AppliedBatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byShard[b.ShardID] += len(b.Events)
	for _, e := range b.Events {
		if !l.ids[e.EventID] {
			l.ids[e.EventID] = true
			l.order[e.ProfileID()] = append(l.order[e.ProfileID()], e.EventID)
		}
	}
}

func (l *appliedLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

func (l *appliedLog) waitFor(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	eventpath.Eventually(t, timeout, func() (bool, string) {
		d := l.distinct()
		return d == n, fmt.Sprintf("%d of %d events applied", d, n)
	})
}

// withDuplicates returns events plus about 5% of them again (redelivery), shuffled so that
// timestamps arrive out of order.
func withDuplicates(r *rand.Rand, evs []events.Event) []events.Event {
	out := slices.Clone(evs)
	for i := 0; i < len(evs); i += 20 {
		out = append(out, evs[r.IntN(len(evs))])
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// requireProfilesMatch reads every customer's profile and compares it with the ground truth.
func requireProfilesMatch(t *testing.T, e *eventpath.Env, evs []events.Event) {
	t.Helper()
	groups := profiletest.ByCustomer(evs)
	ids := make([]string, 0, len(groups))
	for id := range groups {
		ids = append(ids, id)
	}
	profiles, err := e.Store.BatchGet(t.Context(), ids)
	require.NoError(t, err)
	require.Len(t, profiles, len(groups))
	now := time.Now()
	for id, evs := range groups {
		f := &profiles[id].Behaviour
		profiletest.RequireMatchesTruth(t, f, profiletest.GroundTruth(evs, now), now, id)
		var sum int64
		for _, n := range f.Counts {
			sum += n
		}
		require.Equal(t, int64(len(uniqueIDs(evs))), sum, "%s: every unique event counted once", id)
	}
}

func uniqueIDs(evs []events.Event) map[string]bool {
	m := map[string]bool{}
	for _, e := range evs {
		m[e.EventID] = true
	}
	return m
}

func TestConsumer_ProfilesMatchGroundTruth(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 4)
	r := rand.New(rand.NewPCG(10, 20))
	evs := profiletest.GenEvents(r, 10_000, 500, time.Now().UTC())
	sent := withDuplicates(r, evs)
	log := newAppliedLog()
	e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{}, AfterApply: log.hook})
	e.Send(t, sent)
	log.waitFor(t, len(evs), 90*time.Second)
	requireProfilesMatch(t, e, evs)
	require.Len(t, log.byShard, 4, "every shard delivered events")
}

func TestConsumer_TakesLeasesOfAKilledConsumerAndKeepsProfilesExact(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 4)
	r := rand.New(rand.NewPCG(30, 40))
	evs := profiletest.GenEvents(r, 10_000, 500, time.Now().UTC())
	sent := withDuplicates(r, evs)
	log := newAppliedLog()
	const leaseDuration = 3 * time.Second
	a, killA := e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{Owner: "consumer-a", LeaseDuration: leaseDuration}, AfterApply: log.hook})
	b, _ := e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{Owner: "consumer-b", LeaseDuration: leaseDuration}, AfterApply: log.hook})
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) {
		ha, hb := a.Held(), b.Held()
		return len(ha) > 0 && len(hb) > 0 && len(ha)+len(hb) == 4, fmt.Sprintf("a holds %v, b holds %v", ha, hb)
	})
	half := len(sent) / 2
	e.Send(t, sent[:half])
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		return log.distinct() > len(evs)/4, fmt.Sprintf("%d applied", log.distinct())
	})
	// Kill a: no handoff, its leases must expire before b takes them.
	killA()
	<-a.Stopped()
	killed := time.Now()
	e.Send(t, sent[half:])
	eventpath.Eventually(t, 4*leaseDuration, func() (bool, string) {
		return len(b.Held()) == 4, fmt.Sprintf("b holds %v", b.Held())
	})
	took := time.Since(killed)
	// a's leases expire at most leaseDuration after its last renewal (before the kill); b
	// balances every leaseDuration/3. The rest is slack for a loaded machine.
	require.Less(t, took, leaseDuration+leaseDuration/3+2*time.Second, "b took a's leases within the lease timeout")
	log.waitFor(t, len(evs), 90*time.Second)
	requireProfilesMatch(t, e, evs)
}

func TestConsumer_GracefulStopHandsLeasesOver(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 2)
	a, _ := e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{Owner: "a", LeaseDuration: time.Minute}})
	eventpath.Eventually(t, 20*time.Second, func() (bool, string) { return len(a.Held()) == 2, fmt.Sprint(a.Held()) })
	b, _ := e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{Owner: "b", LeaseDuration: time.Minute}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, a.Stop(ctx))
	// Stop returned after the handoff: a holds nothing, not even a lease whose worker returned
	// before the handoff looked (it used to keep that one until it expired).
	leases, err := stream.NewLeaseTable(e.DynamoDB, e.Names.Leases).List(ctx)
	require.NoError(t, err)
	for _, l := range leases {
		require.False(t, l.Owner == "a" && l.Held(time.Now()), "shard %s still held by a after its graceful stop", l.ShardID)
	}
	require.Empty(t, a.Held())
	// With a one-minute lease, only a release lets b take the shards this fast.
	eventpath.Eventually(t, 15*time.Second, func() (bool, string) { return len(b.Held()) == 2, fmt.Sprint(b.Held()) })
}

// phased returns phase p of an ordered workload: perPhase product views for each of customers
// customers (ids <prefix>NN), one second apart, with event ids that sort in production order.
func phased(prefix string, customers, perPhase, p int, now time.Time) []events.Event {
	var evs []events.Event
	for i := range perPhase {
		for c := range customers {
			seq := p*perPhase + i
			evs = append(evs, profiletest.ProductView(fmt.Sprintf("%s%02d-%03d", prefix, c, seq), fmt.Sprintf("%s%02d", prefix, c), now.Add(time.Duration(seq)*time.Second)))
		}
	}
	return evs
}

func TestConsumer_SplitShardKeepsPerCustomerOrder(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 1)
	log := newAppliedLog()
	e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{}, AfterApply: log.hook})
	now := time.Now().UTC()
	const customers, perPhase = 40, 10
	first, second := phased("c", customers, perPhase, 0, now), phased("c", customers, perPhase, 1, now)
	e.Send(t, first[:len(first)/2])
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) { return log.distinct() > 0, "nothing applied yet" })
	// Split mid-stream: the rest of phase one lands on the parent too (sent before the split).
	e.Send(t, first[len(first)/2:])
	ctx := t.Context()
	shards, err := e.Kinesis.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(e.Names.Stream)})
	require.NoError(t, err)
	require.Len(t, shards.Shards, 1)
	mid := new(big.Int).Lsh(big.NewInt(1), 127)
	_, err = e.Kinesis.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String(e.Names.Stream), ShardToSplit: shards.Shards[0].ShardId, NewStartingHashKey: aws.String(mid.String()),
	})
	require.NoError(t, err)
	require.NoError(t, stream.WaitStreamActive(ctx, e.Kinesis, e.Names.Stream))
	e.Send(t, second)
	total := len(first) + len(second)
	log.waitFor(t, total, 60*time.Second)

	// Per customer, events were applied in the order they were produced: all of the parent's
	// before any of a child's.
	log.mu.Lock()
	defer log.mu.Unlock()
	for c := range customers {
		id := fmt.Sprintf("c%02d", c)
		got := log.order[id]
		require.Len(t, got, 2*perPhase, id)
		require.True(t, slices.IsSorted(got), "%s applied out of order: %v", id, got)
	}
	require.Len(t, log.byShard, 3, "the parent and both children delivered events: %v", log.byShard)
	leases, err := stream.NewLeaseTable(e.DynamoDB, e.Names.Leases).List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 3)
	for _, l := range leases {
		if len(l.Parents) == 0 {
			require.True(t, l.Finished(), "the parent shard %s is finished", l.ShardID)
		} else {
			require.Equal(t, []string{aws.ToString(shards.Shards[0].ShardId)}, l.Parents)
		}
	}
}

func TestConsumer_MergeShardsStartsTheChildAfterBothParents(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 2)
	log := newAppliedLog()
	e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{}, AfterApply: log.hook})
	now := time.Now().UTC()
	const customers, perPhase = 40, 8
	first, second := phased("m", customers, perPhase, 0, now), phased("m", customers, perPhase, 1, now)
	e.Send(t, first)
	ctx := t.Context()
	shards, err := e.Kinesis.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(e.Names.Stream)})
	require.NoError(t, err)
	require.Len(t, shards.Shards, 2)
	_, err = e.Kinesis.MergeShards(ctx, &kinesis.MergeShardsInput{
		StreamName: aws.String(e.Names.Stream), ShardToMerge: shards.Shards[0].ShardId, AdjacentShardToMerge: shards.Shards[1].ShardId,
	})
	require.NoError(t, err)
	require.NoError(t, stream.WaitStreamActive(ctx, e.Kinesis, e.Names.Stream))
	e.Send(t, second)
	log.waitFor(t, len(first)+len(second), 60*time.Second)

	log.mu.Lock()
	defer log.mu.Unlock()
	for c := range customers {
		id := fmt.Sprintf("m%02d", c)
		require.True(t, slices.IsSorted(log.order[id]), "%s applied out of order: %v", id, log.order[id])
	}
	leases, err := stream.NewLeaseTable(e.DynamoDB, e.Names.Leases).List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 3)
	var child stream.Lease
	for _, l := range leases {
		if len(l.Parents) > 0 {
			child = l
		} else {
			require.True(t, l.Finished(), "parent %s finished", l.ShardID)
		}
	}
	require.ElementsMatch(t, []string{aws.ToString(shards.Shards[0].ShardId), aws.ToString(shards.Shards[1].ShardId)}, child.Parents)
	require.Equal(t, len(second), log.byShard[child.ShardID], "the child delivered phase two")
}

func TestConsumer_LatestStartSkipsEarlierEvents(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 1)
	now := time.Now().UTC()
	var before []events.Event
	for i := range 20 {
		before = append(before, profiletest.ProductView(fmt.Sprint("before-", i), "late-joiner", now))
	}
	e.Send(t, before)
	log := newAppliedLog()
	c, _ := e.StartConsumer(t, eventpath.Consumer{ConsumerConfig: stream.ConsumerConfig{StartPosition: stream.StartLatest}, AfterApply: log.hook})
	eventpath.Eventually(t, 20*time.Second, func() (bool, string) { return len(c.Held()) == 1, "no lease yet" })
	// The iterator is taken just after the lease: send markers until one arrives.
	sent := 0
	eventpath.Eventually(t, 30*time.Second, func() (bool, string) {
		if log.distinct() > 0 {
			return true, ""
		}
		e.Send(t, []events.Event{profiletest.ProductView(fmt.Sprint("after-", sent), "late-joiner", now)})
		sent++
		return false, "no marker applied yet"
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	for id := range log.ids {
		require.Contains(t, id, "after-", "LATEST must not replay events from before the consumer started")
	}
}

func TestConsumer_StartsChildrenOfParentsTheStreamNoLongerHas(t *testing.T) {
	t.Parallel()
	e := eventpath.New(t, 1)
	ctx := t.Context()
	shards, err := e.Kinesis.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(e.Names.Stream)})
	require.NoError(t, err)
	require.Len(t, shards.Shards, 1)
	child := aws.ToString(shards.Shards[0].ShardId)
	// The lease table remembers two generations of closed parents that Kinesis has deleted
	// since (a closed shard goes once its records are past the retention period): the
	// grandparent was read up to a checkpoint, the parent not at all.
	const grandparent, parent = "shardId-000000000098", "shardId-000000000099"
	lt := stream.NewLeaseTable(e.DynamoDB, e.Names.Leases)
	require.NoError(t, lt.EnsureTable(ctx))
	for _, l := range []struct {
		shard   string
		parents []string
	}{{grandparent, nil}, {parent, []string{grandparent}}, {child, []string{parent}}} {
		created, err := lt.Create(ctx, l.shard, l.parents)
		require.NoError(t, err)
		require.True(t, created)
	}
	leases, err := lt.List(ctx)
	require.NoError(t, err)
	for _, l := range leases {
		if l.ShardID == grandparent {
			held, err := lt.Take(ctx, l, "earlier-consumer", time.Minute, time.Now())
			require.NoError(t, err)
			held, err = lt.Checkpoint(ctx, held, "49590338271490256608559692538361571095921575989136588898")
			require.NoError(t, err)
			require.NoError(t, lt.Release(ctx, held))
		}
	}

	now := time.Now().UTC()
	const customers, perCustomer = 20, 10
	var evs []events.Event
	for i := range perCustomer {
		for c := range customers {
			evs = append(evs, profiletest.ProductView(fmt.Sprintf("g%02d-%03d", c, i), fmt.Sprintf("g%02d", c), now.Add(time.Duration(i)*time.Second)))
		}
	}
	e.Send(t, evs)
	log := newAppliedLog()
	e.StartConsumer(t, eventpath.Consumer{AfterApply: log.hook})
	log.waitFor(t, len(evs), 60*time.Second)

	log.mu.Lock()
	defer log.mu.Unlock()
	for c := range customers {
		id := fmt.Sprintf("g%02d", c)
		require.Len(t, log.order[id], perCustomer, id)
		require.True(t, slices.IsSorted(log.order[id]), "%s applied out of order: %v", id, log.order[id])
	}
	require.Equal(t, map[string]int{child: len(evs)}, log.byShard)
	leases, err = lt.List(ctx)
	require.NoError(t, err)
	require.Len(t, leases, 3)
	for _, l := range leases {
		if l.ShardID == child {
			require.NotEmpty(t, l.Checkpoint, "the child is checkpointed")
			require.False(t, l.Finished(), "the child is open")
		} else {
			require.True(t, l.Finished(), "the vanished shard %s is marked finished", l.ShardID)
		}
	}
}
