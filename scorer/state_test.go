package scorer

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"
)

// visit is one host seen at an event time; a new message starts before it
// when newMsg is set.
type visit struct {
	host   string
	atSec  int64
	newMsg bool
}

func TestStoreEviction(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxHosts int
		ttl      time.Duration
		visits   []visit
		want     []string // hosts held after a final expire, most recent first
		ttlOut   int
		capOut   int
	}{
		{
			name: "cap evicts the least recently seen", maxHosts: 2, ttl: time.Hour,
			visits: []visit{{"a", 0, true}, {"b", 1, true}, {"c", 2, true}},
			want:   []string{"c", "b"}, capOut: 1,
		},
		{
			name: "seeing a host again makes it recent", maxHosts: 2, ttl: time.Hour,
			visits: []visit{{"a", 0, true}, {"b", 1, true}, {"a", 2, true}, {"c", 3, true}},
			want:   []string{"c", "a"}, capOut: 1,
		},
		{
			name: "one message may overshoot the cap, expire trims it", maxHosts: 2, ttl: time.Hour,
			visits: []visit{{"a", 0, true}, {"b", 1, false}, {"c", 2, false}, {"d", 3, false}},
			want:   []string{"d", "c"}, capOut: 2,
		},
		{
			name: "idle hosts expire in event time", maxHosts: 10, ttl: 10 * time.Second,
			visits: []visit{{"a", 0, true}, {"b", 8, true}, {"c", 15, true}},
			want:   []string{"c", "b"}, ttlOut: 1,
		},
		{
			name: "an out-of-order flow does not age its host", maxHosts: 10, ttl: 10 * time.Second,
			// b's flow is older than the watermark, but b was seen at 30s.
			visits: []visit{{"a", 0, true}, {"c", 30, true}, {"b", 1, true}, {"d", 40, true}},
			want:   []string{"d", "b", "c"}, ttlOut: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(4, tc.maxHosts, int64(tc.ttl))
			for i, v := range tc.visits {
				if v.newMsg {
					if i > 0 {
						st.expire()
					}
					st.begin()
				}
				s, _ := st.acquire(v.host, t0+v.atSec*int64(time.Second))
				h, _ := st.state(s)
				h[0] = float32(i + 1) // mark the state as written
			}
			st.expire()
			var got []string
			for s := st.head; s != nilSlot; s = st.meta[s].next {
				got = append(got, st.meta[s].key)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("hosts held = %v, want %v", got, tc.want)
			}
			if st.live != len(tc.want) || len(st.index) != len(tc.want) {
				t.Errorf("live = %d, index = %d, want %d", st.live, len(st.index), len(tc.want))
			}
			ttl, capacity := st.takeEvicted()
			if ttl != tc.ttlOut || capacity != tc.capOut {
				t.Errorf("evicted (ttl, capacity) = (%d, %d), want (%d, %d)", ttl, capacity, tc.ttlOut, tc.capOut)
			}
			// A newcomer takes a released slot and starts from zero.
			st.begin()
			s, _ := st.acquire("newcomer", t0)
			if h, c := st.state(s); slices.ContainsFunc(h, nonZero) || slices.ContainsFunc(c, nonZero) {
				t.Errorf("newcomer's state = %v, %v, want zeros", h, c)
			}
		})
	}
}

func nonZero(x float32) bool { return x != 0 }

func TestStoreListInvariants(t *testing.T) {
	st := newStore(2, 50, int64(time.Minute))
	for i := range 2000 {
		if i%7 == 0 {
			st.expire()
			st.begin()
		}
		host := strconv.Itoa((i * 7919) % 120)
		st.acquire(host, t0+int64(i)*int64(time.Second))
	}
	st.expire()
	seen := 0
	prev := int32(nilSlot)
	for s := st.head; s != nilSlot; s = st.meta[s].next {
		m := st.meta[s]
		if m.prev != prev {
			t.Fatalf("slot %d: prev = %d, want %d", s, m.prev, prev)
		}
		if got, ok := st.index[m.key]; !ok || got != s {
			t.Fatalf("index[%q] = %d, %v, want %d", m.key, got, ok, s)
		}
		if prev != nilSlot && st.meta[prev].touched < m.touched {
			t.Fatalf("touched not monotonic along the list: %d before %d", st.meta[prev].touched, m.touched)
		}
		prev = s
		seen++
	}
	if st.tail != prev || seen != st.live || st.live > 50 {
		t.Fatalf("tail = %d (want %d), walked %d of %d live hosts (cap 50)", st.tail, prev, seen, st.live)
	}
}

// fillStore puts n hosts of hidden size hid into a store, all in one
// message's time so none expires.
func fillStore(n, hid int) *store {
	st := newStore(hid, n, int64(time.Hour))
	buf := make([]byte, 0, 40)
	for i := range n {
		if i%4096 == 0 {
			st.begin()
		}
		// IPv4-like keys, the common case: 10.x.y.z is 8 to 12 bytes.
		buf = fmt.Appendf(buf[:0], "10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		s, _ := st.acquire(string(buf), t0)
		h, c := st.state(s)
		h[0], c[0] = 1, 1
	}
	return st
}

// TestStoreMemory checks the acceptance bound: a million active hosts at
// H=64 fit in under 1 GiB of host state, measured on the heap, and the
// store's own estimate (the metaids_scorer_state_bytes gauge) is close to
// what the heap says.
func TestStoreMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 700 MB")
	}
	const hosts, hid = 1_000_000, 64
	before := heapInUse()
	st := fillStore(hosts, hid)
	after := heapInUse()
	measured := int64(after) - int64(before)
	est := st.bytes()
	perHost := float64(measured) / hosts
	t.Logf("%d hosts at H=%d: heap %d MB (%.0f B/host), estimate %d MB (%.0f B/host); h+c alone are %d B/host",
		hosts, hid, measured>>20, perHost, est>>20, float64(est)/hosts, 2*hid*4)
	if measured >= 1<<30 {
		t.Errorf("host state of %d hosts uses %d bytes on the heap, want under 1 GiB", hosts, measured)
	}
	if ratio := float64(est) / float64(measured); ratio < 0.8 || ratio > 1.25 {
		t.Errorf("bytes() = %d, heap grew by %d: estimate off by a factor %.2f, want within 0.8..1.25", est, measured, ratio)
	}
	runtime.KeepAlive(st)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
