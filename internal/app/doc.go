// Package app assembles Tailor's components from open backends: the event ingestor, the
// stream consumer that aggregates events into profiles, CDC, the River workers and the metrics
// registry (Registry; MetricsReference lists every metric any process exports). The commands
// (cmd/tailor) and the demo (internal/demo) both build the system here,
// so the demo runs exactly the wiring production runs.
//
// It holds wiring only: no business rules, no flags (cmd/tailor maps flags onto the option
// structs), no SQL.
//
// It may import every component package; no component package may import it.
package app
