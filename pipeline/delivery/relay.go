package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// Relay defaults.
const (
	// ConcurrencyDefault is how many messages a Relay sends at once.
	ConcurrencyDefault = 8
	// ClaimBatchDefault is how many messages one Claim asks for.
	ClaimBatchDefault = 100
	// ClaimBatchMax is the most one Claim may ask for (the sender API's limit).
	ClaimBatchMax = 500
	// LeaseDefault is how long claimed messages stay the relay's.
	LeaseDefault = 5 * time.Minute
	// PollIntervalDefault is how long an idle relay waits before claiming again.
	PollIntervalDefault = time.Second
	// MaxAttemptsDefault: after this many temporary refusals a message is a soft bounce.
	MaxAttemptsDefault = 5
	// RetryBaseDefault is the first retry's delay; each further one doubles, up to RetryMaxDefault.
	RetryBaseDefault = time.Minute
	// RetryMaxDefault caps a retry's delay.
	RetryMaxDefault = time.Hour
	// AckBatchDefault is how many outcomes one Ack carries at most.
	AckBatchDefault = 100
	// AckIntervalDefault is how long an outcome waits for others before it is acked.
	AckIntervalDefault = 200 * time.Millisecond
	// AckersDefault is how many Acks may be in flight at once.
	AckersDefault = 4
	// ClaimersDefault is how many Claims may be in flight at once.
	ClaimersDefault = 2
	// ProgressIntervalDefault is how often the per-campaign progress lines are logged.
	ProgressIntervalDefault = 10 * time.Second
	// maxDomainLimiters bounds the per-domain rate limiters kept; idle ones are dropped first.
	maxDomainLimiters = 10_000
	// ackTries is how often a failing Ack is tried before its outcomes are given up (their
	// messages come back when their lease expires).
	ackTries = 3
	// ackTimeout bounds one Ack.
	ackTimeout = 30 * time.Second
)

// RelayConfig configures a Relay. Zero values mean the defaults.
type RelayConfig struct {
	// Source hands out messages and takes their outcomes. Required.
	Source Source
	// Sender delivers them (SMTPSender, SESSender). Required. When it has a
	// Check(ctx) error method, Start calls it first.
	Sender Sender
	// MIME builds the messages. Required.
	MIME *MIMEBuilder
	// EnvelopeFrom is the bounce address (MAIL FROM); default MIME's From address.
	EnvelopeFrom string
	// Concurrency is how many messages are sent at once; default ConcurrencyDefault (8).
	Concurrency int
	// Rate bounds messages per second over all recipients; 0: unbounded.
	Rate float64
	// Burst is how many messages may go at once above Rate; default Concurrency.
	Burst int
	// DomainRate bounds messages per second to one recipient domain; 0: unbounded.
	DomainRate float64
	// DomainBurst: default 1.
	DomainBurst int
	// ClaimBatch is how many messages one Claim asks for; default ClaimBatchDefault (100),
	// at most ClaimBatchMax (500).
	ClaimBatch int
	// Lease is how long claimed messages stay this relay's; default LeaseDefault (5 min).
	// A message waiting for a domain's rate longer than a quarter of it is handed back
	// (StatusRetry) instead.
	Lease time.Duration
	// PollInterval is the wait after a Claim found nothing; default PollIntervalDefault (1 s).
	PollInterval time.Duration
	// MaxAttempts: a message refused temporarily (4xx) on its MaxAttempts-th hand-out is a
	// soft bounce; default MaxAttemptsDefault (5).
	MaxAttempts int
	// RetryBase and RetryMax shape the retry delays: RetryBase·2^attempt, at most RetryMax,
	// the upper half of it at random. Defaults RetryBaseDefault (1 min) and RetryMaxDefault (1 h).
	RetryBase, RetryMax time.Duration
	// AckBatch and AckInterval group outcomes into Acks; defaults AckBatchDefault (100) and
	// AckIntervalDefault (200 ms).
	AckBatch    int
	AckInterval time.Duration
	// Claimers is how many Claims may be in flight at once (each of up to ClaimBatch
	// messages), so that the workers do not wait for one store round trip; default
	// ClaimersDefault (2).
	Claimers int
	// Ackers is how many Acks may be in flight at once, so that a slow store round trip does
	// not hold up the sends; default AckersDefault (4).
	Ackers int
	// ProgressInterval: default ProgressIntervalDefault (10 s).
	ProgressInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// now and rateWait are the rate limits' clock; tests replace them (export_test.go).
	now      func() time.Time
	rateWait func(context.Context, time.Duration) error
}

func (c RelayConfig) withDefaults() RelayConfig {
	c.Concurrency = cmp.Or(c.Concurrency, ConcurrencyDefault)
	c.Burst = cmp.Or(c.Burst, c.Concurrency)
	c.DomainBurst = cmp.Or(c.DomainBurst, 1)
	c.ClaimBatch = cmp.Or(c.ClaimBatch, ClaimBatchDefault)
	c.Lease = cmp.Or(c.Lease, LeaseDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, MaxAttemptsDefault)
	c.RetryBase = cmp.Or(c.RetryBase, RetryBaseDefault)
	c.RetryMax = cmp.Or(c.RetryMax, RetryMaxDefault)
	c.AckBatch = cmp.Or(c.AckBatch, AckBatchDefault)
	c.AckInterval = cmp.Or(c.AckInterval, AckIntervalDefault)
	c.Ackers = cmp.Or(c.Ackers, AckersDefault)
	c.Claimers = cmp.Or(c.Claimers, ClaimersDefault)
	c.ProgressInterval = cmp.Or(c.ProgressInterval, ProgressIntervalDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MIME != nil {
		c.EnvelopeFrom = cmp.Or(c.EnvelopeFrom, c.MIME.EnvelopeFrom())
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rateWait == nil {
		c.rateWait = ctxtime.Sleep
	}
	return c
}

func (c RelayConfig) validate() error {
	switch {
	case c.Source == nil:
		return errors.New("delivery: RelayConfig.Source is required")
	case c.Sender == nil:
		return errors.New("delivery: RelayConfig.Sender is required")
	case c.MIME == nil:
		return errors.New("delivery: RelayConfig.MIME is required")
	case c.Concurrency < 1 || c.Burst < 1 || c.DomainBurst < 1 || c.AckBatch < 1 || c.MaxAttempts < 1 || c.Ackers < 1 || c.Claimers < 1:
		return errors.New("delivery: RelayConfig: Concurrency, Burst, DomainBurst, AckBatch, Ackers, Claimers and MaxAttempts must be positive")
	case c.ClaimBatch < 1 || c.ClaimBatch > ClaimBatchMax:
		return fmt.Errorf("delivery: RelayConfig.ClaimBatch %d: want 1 to %d", c.ClaimBatch, ClaimBatchMax)
	case c.Rate < 0 || c.DomainRate < 0:
		return errors.New("delivery: RelayConfig: Rate and DomainRate must not be negative")
	case c.Lease < time.Second || c.PollInterval < 0 || c.RetryBase < 0 || c.RetryMax < c.RetryBase || c.AckInterval < 0 || c.ProgressInterval < 0:
		return errors.New("delivery: RelayConfig: Lease must be at least 1s; RetryMax at least RetryBase; no negative durations")
	}
	if err := checkAddress(c.EnvelopeFrom); err != nil {
		return fmt.Errorf("delivery: RelayConfig.EnvelopeFrom: %v", err)
	}
	// Every message the relay holds must be sent within its lease: at Rate, the last of
	// them waits inFlight/Rate.
	if c.Rate > 0 {
		if need := time.Duration(float64(c.inFlight()) / c.Rate * float64(time.Second)); need > c.Lease/2 {
			return fmt.Errorf("delivery: RelayConfig: at %v messages/s the %d messages a relay holds take %v, more than half the %v lease: raise Lease or lower ClaimBatch and Concurrency",
				c.Rate, c.inFlight(), need.Round(time.Second), c.Lease)
		}
	}
	return nil
}

// inFlight is how many claimed messages the relay holds at most: a batch queued for each
// worker's next message, and one being sent by each.
func (c RelayConfig) inFlight() int { return c.Claimers*c.ClaimBatch + c.Concurrency }

// Relay claims messages from a Source, builds them, sends them through a Sender with a
// concurrency and rate limits, and acks each outcome:
//
//   - accepted (2xx): StatusSent with the provider's id and reply;
//   - refused for the recipient, permanently (5xx): StatusBounced, hard, with the reply;
//   - refused temporarily (4xx): StatusRetry after a backoff, and StatusBounced, soft, on the
//     message's MaxAttempts-th hand-out;
//   - refused for the sender (MAIL FROM, a paused account), or not sent (network, TLS):
//     StatusRetry after a backoff, however often, since the recipient is not at fault;
//   - not buildable, or refused as content before any recipient saw it: StatusFailed.
//
// Outcomes are acked only after the provider answered. A message whose send was interrupted
// by a hard stop is not acked: it comes back when its lease expires. Start it once.
type Relay struct {
	cfg     RelayConfig
	limiter *rate.Limiter // nil: no global rate
	domains *domainLimiters

	credits  chan struct{} // one per message the relay may hold
	jobs     chan Message
	outcomes chan Outcome

	soft, hard       context.CancelFunc
	softCtx, hardCtx context.Context
	stopped          chan struct{}

	mu       sync.Mutex
	progress map[int64]*CampaignProgress
	logged   map[int64]CampaignProgress // what the last progress line said
	started  time.Time
}

// CampaignProgress counts one campaign's outcomes in this relay since it started.
type CampaignProgress struct {
	CampaignID int64
	Sent       int
	Bounced    int // hard and soft
	Failed     int
	Retried    int    // handed back to try later
	LastError  string // the last retry's or failure's reason
}

// NewRelay checks cfg and returns a Relay to Start.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Relay{
		cfg: cfg, credits: make(chan struct{}, cfg.inFlight()), jobs: make(chan Message, cfg.Claimers*cfg.ClaimBatch),
		outcomes: make(chan Outcome, cfg.AckBatch), stopped: make(chan struct{}),
		progress: map[int64]*CampaignProgress{}, logged: map[int64]CampaignProgress{},
	}
	for range cfg.inFlight() {
		r.credits <- struct{}{}
	}
	if cfg.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	if cfg.DomainRate > 0 {
		r.domains = &domainLimiters{limit: rate.Limit(cfg.DomainRate), burst: cfg.DomainBurst, m: map[string]*rate.Limiter{}}
	}
	return r, nil
}

// checker is a Sender that can test its connection before the first message.
type checker interface {
	Check(ctx context.Context) error
}

// Start checks the Sender when it can (a wrong address or password fails here) and starts
// claiming and sending until Stop, or until ctx ends (a hard stop: sends in progress are cut).
func (r *Relay) Start(ctx context.Context) error {
	if c, ok := r.cfg.Sender.(checker); ok {
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("relay: check the sender: %w", err)
		}
	}
	r.hardCtx, r.hard = context.WithCancel(ctx)
	r.softCtx, r.soft = context.WithCancel(r.hardCtx)
	r.started = r.cfg.now()
	var workers sync.WaitGroup
	for range r.cfg.Concurrency {
		workers.Go(r.work)
	}
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		r.ack()
	}()
	claimed := make(chan struct{})
	go func() {
		defer close(claimed)
		var claimers sync.WaitGroup
		for range r.cfg.Claimers {
			claimers.Go(r.claim)
		}
		claimers.Wait()
		close(r.jobs)
	}()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.logProgress()
	}()
	go func() {
		defer close(r.stopped)
		<-claimed // Stop (or ctx) ended claiming; jobs is closed
		workers.Wait()
		close(r.outcomes)
		<-acked
		r.hard() // ends logProgress
		<-progressDone
		r.logLines(true)
	}()
	return nil
}

// Stop stops claiming, sends and acks what the relay holds, and returns when it is done, or
// cuts the sends short when ctx ends (their messages come back after their lease).
func (r *Relay) Stop(ctx context.Context) error {
	if r.soft == nil {
		return errors.New("relay: Stop before Start")
	}
	r.soft()
	select {
	case <-r.stopped:
		return nil
	case <-ctx.Done():
		r.hard()
		<-r.stopped
		return ctx.Err()
	}
}

// Stopped is closed once the relay stopped.
func (r *Relay) Stopped() <-chan struct{} { return r.stopped }

// Progress returns each campaign's counts so far, by campaign id.
func (r *Relay) Progress() []CampaignProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]CampaignProgress, 0, len(r.progress))
	for _, p := range r.progress {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b CampaignProgress) int { return cmp.Compare(a.CampaignID, b.CampaignID) })
	return out
}

// claim feeds jobs until the soft stop, holding at most inFlight messages.
func (r *Relay) claim() {
	ctx := r.softCtx
	for {
		// Wait for room for one message, then take what else is free, up to a batch.
		select {
		case <-r.credits:
		case <-ctx.Done():
			return
		}
		// While the workers have queued messages left, wait for room for half a batch, so that
		// claims stay large (each is a transaction and a re-check in Postgres); when the
		// queue runs dry, claim what there is room for at once.
		n := 1
	more:
		for n < r.cfg.ClaimBatch {
			select {
			case <-r.credits:
				n++
				continue
			default:
			}
			if n >= r.cfg.ClaimBatch/2 || len(r.jobs) == 0 {
				break more
			}
			select {
			case <-r.credits:
				n++
			case <-ctx.Done():
				return
			}
		}
		msgs, err := r.cfg.Source.Claim(ctx, n, r.cfg.Lease)
		if len(msgs) > n {
			err, msgs = fmt.Errorf("the source returned %d messages for a claim of %d", len(msgs), n), nil
		}
		for range n - len(msgs) {
			r.credits <- struct{}{}
		}
		relayClaimed.Add(float64(len(msgs)))
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("relay: claim messages", "err", err)
		}
		for _, m := range msgs {
			r.jobs <- m // never blocks for long: jobs holds a batch, credits bound the rest
		}
		switch {
		case len(msgs) == 0 || err != nil:
			if ctx.Err() != nil || ctxtime.Sleep(ctx, r.cfg.PollInterval) != nil {
				return
			}
		case len(msgs) < n/2:
			// Messages trickle in (a campaign still rendering): let a few more become ready
			// rather than claim them one transaction each.
			if ctxtime.Sleep(ctx, r.cfg.PollInterval/4) != nil {
				return
			}
		}
	}
}

// work sends jobs until they run out.
func (r *Relay) work() {
	for m := range r.jobs {
		if o, ok := r.deliver(r.hardCtx, m); ok {
			r.count(o)
			r.outcomes <- o
		}
		r.credits <- struct{}{}
	}
}

// rawBuffers are the built messages' buffers, reused message after message: a new ~18 KB
// buffer per message was 60 % of the relay's allocated bytes and most of its GC. A buffer
// that grew beyond maxPooledRaw for a big message is left to the GC.
var rawBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledRaw = 256 << 10

// deliver sends one message and says what became of it; false when a hard stop cut it short.
func (r *Relay) deliver(ctx context.Context, m Message) (Outcome, bool) {
	o := Outcome{MessageID: m.ID, CampaignID: m.CampaignID, Receipt: m.Receipt}
	buf := rawBuffers.Get().(*[]byte)
	raw, err := r.cfg.MIME.AppendBuild((*buf)[:0], m)
	defer func() {
		if raw != nil {
			*buf = raw[:0]
		}
		if cap(*buf) <= maxPooledRaw {
			rawBuffers.Put(buf)
		}
	}()
	if err != nil {
		o.Status, o.Reason = StatusFailed, err.Error()
		return o, true
	}
	if wait, ok := r.reserve(m.Email); !ok {
		o.Status, o.RetryAfter = StatusRetry, wait
		o.Reason = fmt.Sprintf("the recipient's domain is at its rate (%v messages/s)", r.cfg.DomainRate)
		return o, true
	} else if wait > 0 {
		if r.cfg.rateWait(ctx, wait) != nil {
			return o, false
		}
	}
	res, err := r.cfg.Sender.Send(ctx, Envelope{From: r.cfg.EnvelopeFrom, To: m.Email}, raw)
	var rej *RejectError
	switch {
	case err == nil:
		o.Status, o.ProviderID, o.Reply = StatusSent, res.ProviderID, res.Reply
	case ctx.Err() != nil:
		return o, false
	case errors.As(err, &rej) && rej.Stage == StageSender:
		o.Status, o.RetryAfter, o.Reply = StatusRetry, r.backoff(m.Attempt), rej.Reply
		o.Reason = "the provider refused the sender: check the account and the bounce address"
	case errors.As(err, &rej) && rej.Stage == StageMessage && !rej.Temporary():
		o.Status, o.Reply, o.Reason = StatusFailed, rej.Reply, "the provider refused the message"
	case errors.As(err, &rej) && !rej.Temporary():
		o.Status, o.Bounce, o.Reply = StatusBounced, BounceHard, rej.Reply
	case errors.As(err, &rej) && m.Attempt+1 >= r.cfg.MaxAttempts:
		o.Status, o.Bounce, o.Reply = StatusBounced, BounceSoft, rej.Reply
		o.Reason = fmt.Sprintf("refused temporarily on %d attempts", m.Attempt+1)
	case errors.As(err, &rej):
		o.Status, o.RetryAfter, o.Reply = StatusRetry, r.backoff(m.Attempt), rej.Reply
	default:
		o.Status, o.RetryAfter, o.Reason = StatusRetry, r.backoff(m.Attempt), err.Error()
	}
	return o, true
}

// backoff is the delay before hand-out attempt+1: RetryBase·2^attempt, capped at RetryMax,
// then a random point in its upper half, so that retries of one burst spread out.
func (r *Relay) backoff(attempt int) time.Duration {
	d := r.cfg.RetryBase
	for i := 0; i < attempt && d < r.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, r.cfg.RetryMax)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2)
}

// reserve takes a slot in the domain's and the global rate and returns how long to wait for
// it; false when the domain's wait would exceed a quarter of the lease (nothing is taken).
func (r *Relay) reserve(email string) (time.Duration, bool) {
	now := r.cfg.now()
	var wait time.Duration
	if r.domains != nil {
		res := r.domains.get(email[strings.LastIndexByte(email, '@')+1:], now).ReserveN(now, 1)
		wait = res.DelayFrom(now)
		if wait > r.cfg.Lease/4 {
			res.CancelAt(now)
			return wait, false
		}
	}
	if r.limiter != nil {
		wait = max(wait, r.limiter.ReserveN(now, 1).DelayFrom(now))
	}
	return wait, true
}

// ack groups outcomes into Acks until outcomes is closed, then acks the rest.
func (r *Relay) ack() {
	var batch []Outcome
	timer := time.NewTimer(r.cfg.AckInterval)
	timer.Stop()
	// Up to Ackers batches are acked at once; the last ones are waited for.
	sem := make(chan struct{}, r.cfg.Ackers)
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	flush := func() {
		if len(batch) > 0 {
			sem <- struct{}{}
			b := batch
			inFlight.Go(func() {
				defer func() { <-sem }()
				r.ackBatch(b)
			})
			batch = nil
		}
		timer.Stop()
	}
	for {
		select {
		case o, ok := <-r.outcomes:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				timer.Reset(r.cfg.AckInterval)
			}
			batch = append(batch, o)
			if len(batch) >= r.cfg.AckBatch {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// ackBatch acks outcomes, trying again twice; it gives up when the hard stop comes, and then
// the messages come back after their lease (and may be sent twice).
func (r *Relay) ackBatch(outcomes []Outcome) {
	var err error
	for try := range ackTries {
		// The outcomes are acked even during a hard stop, within ackTimeout.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.hardCtx), ackTimeout)
		err = r.cfg.Source.Ack(ctx, outcomes)
		cancel()
		if err == nil {
			return
		}
		if r.hardCtx.Err() != nil || try == ackTries-1 {
			break
		}
		if ctxtime.Sleep(r.hardCtx, time.Duration(try+1)*r.cfg.AckInterval) != nil {
			break
		}
	}
	relayAckFailures.Inc()
	r.cfg.Logger.Error("relay: ack failed: these messages come back when their lease expires, and may be sent again",
		"messages", len(outcomes), "err", err)
}

func (r *Relay) count(o Outcome) {
	relayOutcomes.WithLabelValues(string(o.Status)).Inc()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress[o.CampaignID]
	if p == nil {
		p = &CampaignProgress{CampaignID: o.CampaignID}
		r.progress[o.CampaignID] = p
	}
	switch o.Status {
	case StatusSent:
		p.Sent++
	case StatusBounced:
		p.Bounced++
	case StatusFailed:
		p.Failed++
		p.LastError = cmp.Or(o.Reason, o.Reply)
	case StatusRetry:
		p.Retried++
		p.LastError = cmp.Or(o.Reply, o.Reason)
	}
}

func (r *Relay) logProgress() {
	if r.cfg.ProgressInterval <= 0 {
		return
	}
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	for {
		select {
		case <-r.hardCtx.Done():
			return
		case <-t.C:
			r.logLines(false)
		}
	}
}

// logLines logs one line per campaign whose counts changed since its last line (every
// campaign when final).
func (r *Relay) logLines(final bool) {
	elapsed := r.cfg.now().Sub(r.started).Seconds()
	for _, p := range r.Progress() {
		r.mu.Lock()
		same := r.logged[p.CampaignID] == p
		r.logged[p.CampaignID] = p
		r.mu.Unlock()
		if same && !final {
			continue
		}
		attrs := []any{"campaign", p.CampaignID, "sent", p.Sent, "bounced", p.Bounced, "failed", p.Failed, "retried", p.Retried}
		if elapsed > 0 {
			attrs = append(attrs, "sent_per_sec", int(float64(p.Sent)/elapsed))
		}
		if p.LastError != "" {
			attrs = append(attrs, "last_error", p.LastError)
		}
		msg := "relay progress"
		if final {
			msg = "relay done"
		}
		r.cfg.Logger.Info(msg, attrs...)
	}
}

// domainLimiters keeps one rate limiter per recipient domain.
type domainLimiters struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (d *domainLimiters) get(domain string, now time.Time) *rate.Limiter {
	domain = strings.ToLower(domain)
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.m[domain]; l != nil {
		return l
	}
	if len(d.m) >= maxDomainLimiters {
		// A limiter with a full bucket holds nothing a new one would not: drop those.
		for k, l := range d.m {
			if l.TokensAt(now) >= float64(d.burst) {
				delete(d.m, k)
			}
		}
	}
	l := rate.NewLimiter(d.limit, d.burst)
	d.m[domain] = l
	return l
}
