package main

import (
	"math"
	"os"
	"runtime/debug"
)

// defaultMemoryLimit is the Go heap's soft limit in serve and dev unless GOMEMLIMIT says
// otherwise. Each password hash allocates 19 MiB that is garbage a moment later; without a
// limit the collector lets that garbage grow to the size of the live heap again before it
// runs, and a burst of sign-ins takes the process far above what it uses. A soft limit
// makes the collector run sooner near it; it never refuses an allocation (BenchmarkSignInBurst
// measures the peak with it).
const defaultMemoryLimit = 100 << 20

// applyMemoryLimit sets defaultMemoryLimit when the operator has not set GOMEMLIMIT (the
// runtime reads that from the process environment itself) and reports the limit in force.
func applyMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return 0
	}
	return limit
}
