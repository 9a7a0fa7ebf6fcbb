package main

import (
	"slices"
	"strconv"
	"time"
)

// median returns the median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// millis is d in milliseconds (microsecond resolution).
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ms formats d in milliseconds with three decimals.
func ms(d time.Duration) string { return strconv.FormatFloat(millis(d), 'f', 3, 64) }

// us formats d in whole microseconds.
func us(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }

// mib is a size in KiB as MiB.
func mib(kib int64) float64 { return float64(kib) / 1024 }
