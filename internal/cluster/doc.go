// Package cluster supervises a local multi-process Tailor cluster: several `tailor consume`,
// `tailor work`, `tailor cdc`, `tailor serve` (and, where the binary has it, `tailor relay`)
// processes over one local stack, each with its own log file. It starts them, reports their
// pids, ports and logs, kills (SIGKILL) and restarts single processes on request, and stops
// them all. It never restarts anything by itself: whoever drives it (`tailor dev cluster`, the
// chaos harness) decides. The roles are a table (Roles): adding a role is one entry.
package cluster
