package templates

import (
	"sync"
	"sync/atomic"
)

// Reasons a part renders with liquid instead of the fast path (Counters.FastFallbacks).
const (
	FallbackUnsupported = "unsupported" // the part uses what the fast path does not compile (tablerow, map iteration, ...)
	FallbackSlowPath    = "slow_path"   // a value the fast path leaves to liquid (odd loop bounds, a filter it does not convert)
	FallbackError       = "error"       // a run-time error: liquid renders the part for its error message
	FallbackPanic       = "panic"       // the fast path panicked
)

// Counters are the rendering counters of this process since it started. templates keeps them as
// plain atomics and does not import the Prometheus client: package templates/rendermetrics
// exports them (tailor_render_fast_fallbacks_total, tailor_render_budget_exceeded_total).
type Counters struct {
	// FastFallbacks counts parts rendered by liquid instead of the fast path, by reason
	// (FallbackUnsupported, ...). Every reason is present.
	FastFallbacks map[string]uint64
	// BudgetBreaches counts renders stopped by a budget (Renderer.Render's *BudgetError), by
	// budget. Every budget is present.
	BudgetBreaches map[Budget]uint64
}

// The counters, by index of fallbackReasons and budgetNames.
var (
	fallbackReasons = [...]string{FallbackUnsupported, FallbackSlowPath, FallbackError, FallbackPanic}
	budgetNames     = [...]Budget{BudgetHTML, BudgetText, BudgetSubject, BudgetPreheader, BudgetIterations, BudgetString, BudgetItems, BudgetTime}
	fallbackCounts  [len(fallbackReasons)]atomic.Uint64
	breachCounts    [len(budgetNames)]atomic.Uint64
)

func countFallback(reason string) {
	for i, r := range fallbackReasons {
		if r == reason {
			fallbackCounts[i].Add(1)
			return
		}
	}
}

func countBreach(b Budget) {
	for i, n := range budgetNames {
		if n == b {
			breachCounts[i].Add(1)
			return
		}
	}
}

// ReadCounters returns the counters. It is safe for concurrent use.
func ReadCounters() Counters {
	c := Counters{FastFallbacks: map[string]uint64{}, BudgetBreaches: map[Budget]uint64{}}
	for i, r := range fallbackReasons {
		c.FastFallbacks[r] = fallbackCounts[i].Load()
	}
	for i, b := range budgetNames {
		c.BudgetBreaches[b] = breachCounts[i].Load()
	}
	return c
}

// Breaker states of content sources (ReadBreakerStates), as Prometheus exports them: the
// numbers are gobreaker's.
const (
	BreakerClosed   = 0 // the source is called
	BreakerHalfOpen = 1 // a trial call decides
	BreakerOpen     = 2 // calls fail fast: renders use stale content or the fallback
)

// breakerStates holds each content source's breaker state in this process, by breaker name
// (template/source): name -> *atomic.Int32.
var breakerStates sync.Map

func setBreakerState(name string, state int32) {
	v, _ := breakerStates.LoadOrStore(name, new(atomic.Int32))
	v.(*atomic.Int32).Store(state)
}

// ReadBreakerStates returns the circuit breaker state (BreakerClosed, BreakerHalfOpen,
// BreakerOpen) of every content source this process has called, by "template/source". Breakers
// live in the process that renders (each tailor work has its own), so this is this process's
// view only. Safe for concurrent use.
func ReadBreakerStates() map[string]int {
	out := map[string]int{}
	breakerStates.Range(func(k, v any) bool {
		out[k.(string)] = int(v.(*atomic.Int32).Load())
		return true
	})
	return out
}
