package main

import (
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// gcFlags tune the Go garbage collector of a long-running process that allocates a lot per
// message (tailor work renders ~11 KB bodies from decoded profiles). Go's default (GOGC=100, no
// limit) spent about a quarter of tailor work's CPU in the collector on a 100 000-recipient
// campaign: a higher GOGC collects less often, and the soft memory limit makes it collect
// sooner again as the process nears it, so the peak stays bounded (measured in BENCHMARKS.md:
// campaign.work_peak_rss_mb). GOGC and GOMEMLIMIT in the environment win over the flags.
func gcFlags(command string, percent, limitMB int) []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "gc-percent", EnvVars: []string{"TAILOR_" + command + "_GC_PERCENT"}, Value: percent,
			Usage: "the garbage collector's GOGC: collect when the heap grew by this many percent (GOGC in the environment wins)"},
		&cli.IntFlag{Name: "memory-limit-mb", EnvVars: []string{"TAILOR_" + command + "_MEMORY_LIMIT_MB"}, Value: limitMB,
			Usage: "soft memory limit of the Go runtime in MiB: it collects harder as the process nears it; 0: none (GOMEMLIMIT in the environment wins)"},
	}
}

// tuneGC applies gcFlags, except where GOGC or GOMEMLIMIT are set.
func tuneGC(c *cli.Context) error {
	if p := c.Int("gc-percent"); p < 10 {
		return usagef("--gc-percent %d: want 10 or more (100 is Go's default)", p)
	}
	if m := c.Int("memory-limit-mb"); m < 0 || (m > 0 && m < 64) {
		return usagef("--memory-limit-mb %d: want 0 (none) or at least 64", m)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(c.Int("gc-percent"))
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && c.Int("memory-limit-mb") > 0 {
		debug.SetMemoryLimit(int64(c.Int("memory-limit-mb")) << 20)
	}
	return nil
}
