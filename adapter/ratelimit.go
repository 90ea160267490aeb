package adapter

import "time"

// rateLimiter is a token bucket per analyst. It runs on the labels' record
// times, not the wall clock, so that re-reading the labels after a restart
// admits the same ones as the first reading did.
type rateLimiter struct {
	perNs   float64 // tokens per nanosecond
	burst   float64
	max     int
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     int64 // ns of the last refill
}

func newRateLimiter(c RateLimitConfig) *rateLimiter {
	return &rateLimiter{
		perNs:   c.PerMinute / float64(time.Minute),
		burst:   float64(c.Burst),
		max:     c.MaxAnalysts,
		buckets: map[string]*bucket{},
	}
}

// allow takes a token from analyst's bucket at time nowNs and reports
// whether there was one. Labels without an analyst share one bucket.
func (r *rateLimiter) allow(analyst string, nowNs int64) bool {
	b := r.buckets[analyst]
	if b == nil {
		if len(r.buckets) >= r.max && !r.forgetIdle(nowNs) {
			// Every tracked analyst is active: a flood of made-up analyst
			// names must not buy fresh buckets.
			return false
		}
		b = &bucket{tokens: r.burst, at: nowNs}
		r.buckets[analyst] = b
	}
	if nowNs > b.at {
		b.tokens = min(r.burst, b.tokens+float64(nowNs-b.at)*r.perNs)
		b.at = nowNs
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetIdle drops the buckets that have refilled completely, which say
// nothing a fresh bucket would not, and reports whether it dropped any.
func (r *rateLimiter) forgetIdle(nowNs int64) bool {
	dropped := false
	for name, b := range r.buckets {
		if b.tokens+float64(nowNs-b.at)*r.perNs >= r.burst {
			delete(r.buckets, name)
			dropped = true
		}
	}
	return dropped
}
