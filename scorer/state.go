package scorer

import (
	"strings"
	"unsafe"

	"github.com/metaids/metaids/features"
)

// store holds the LSTM state of the hosts of one features partition.
//
// The states live in contiguous float32 slabs, h and c, hidden values per
// slot, rather than in a slice per host: a million hosts are then a few
// hundred large allocations instead of two million small ones, which the
// garbage collector does not have to scan (float32 holds no pointers), and a
// wave gathers its hosts' states with plain copies. The slabs come in pages
// of pageSlots slots, so the store grows without copying what it holds and
// never holds more than one page it does not use. Everything else about a
// host sits in a small fixed-size slot record, and the host key maps to its
// slot.
//
// Memory is bounded two ways. A host idle for longer than the TTL expires,
// and past maxHosts the least recently seen host is evicted. Both walk an
// intrusive doubly-linked list of slots kept in the order hosts were last
// seen. "Time" is event time: the store's watermark is the newest flow end
// it has seen, so expiry is a function of the input alone and a replay of
// old logs ages hosts as the original traffic did. expire drops idle hosts
// between messages, and each flow checks its own host (acquire, reset), so
// where the messages' boundaries fall does not change any score.
//
// A store is not safe for concurrent use.
type store struct {
	hid      int   // H, state values per slot
	maxHosts int   // the cap on live hosts, soft within one message
	ttl      int64 // ns of event time a host may stay idle

	index map[string]int32
	h, c  [][]float32 // pages; slot s is in page s/pageSlots
	meta  []slot
	free  []int32 // slots released by expiry or eviction, for reuse

	// LRU list: head is the most recently seen slot, tail the least.
	head, tail int32
	live       int
	keyBytes   int // sum of allocated key sizes, for bytes()

	watermark int64  // newest flow end seen, ns since the epoch
	gen       uint32 // stamp of the message being planned

	evictedTTL, evictedCap int // since the last takeEvicted

	// Checkpoint bookkeeping, kept only when track is set: the slots whose
	// state changed since the last checkpoint (a slot may be listed twice;
	// its dirty flag says whether it still needs writing) and the keys of
	// checkpointed hosts dropped since, which need a tombstone.
	track bool
	dirty []int32
	tombs []string
}

// slot is the per-host record beside the state slabs.
type slot struct {
	key     string              // the host key; the index shares its bytes
	lastNs  int64               // start of the host's previous flow, for dt_prev
	peers   features.PeerMemory // its recent responders, for dst_repeat and dt_dst
	touched int64               // the watermark when the host was last seen; monotonic along the LRU list
	prev    int32
	next    int32
	flows   uint32 // flows seen since the state was created or reset
	gen     uint32 // the message that last planned this slot
	wave    int32  // flows of this host planned so far in message gen
	dirty   bool   // changed since the last checkpoint
	saved   bool   // has a record on the scorer.state topic
}

const nilSlot = -1

// pageSlots is the number of slots per slab page: 512 KiB of h and c at
// H=64, large enough to be "one big slab" to the allocator, small enough
// that an idle partition's store costs little.
const (
	pageShift = 10
	pageSlots = 1 << pageShift
)

// Approximate costs of what bytes() cannot measure directly: a Swiss-table
// map entry for a string key and int32 value is a 24-byte slot with a
// control byte at a load factor between 7/16 and 7/8. The middle is close
// enough for a gauge; TestStoreMemory holds the estimate against the heap.
const mapEntryBytes = 40

func newStore(hid, maxHosts int, ttlNs int64) *store {
	return &store{
		hid:      hid,
		maxHosts: maxHosts,
		ttl:      ttlNs,
		index:    make(map[string]int32),
		head:     nilSlot,
		tail:     nilSlot,
	}
}

// begin starts planning a new message. Slots planned under the new stamp
// are not evicted to make room while the message is planned, so a message
// never loses the state of a host it is about to step; the store may then
// hold more than maxHosts until the next expire.
func (st *store) begin() {
	st.gen++
	if st.gen == 0 { // wrapped: clear the stamps, so no slot looks current
		for i := range st.meta {
			st.meta[i].gen = 0
		}
		st.gen = 1
	}
}

// acquire returns host's slot, creating a zero state for a host not held, and
// marks the host as seen now: it moves to the head of the LRU list and the
// watermark advances to endNs if that is newer. key may alias a batch; it is
// cloned when stored. expired reports a held host idle for longer than the
// TTL as of the watermark before this flow: the test expire applies between
// messages, applied to one flow, so that its state can start afresh (reset)
// wherever the messages' boundaries fall.
func (st *store) acquire(key string, endNs int64) (s int32, expired bool) {
	s, ok := st.index[key]
	if ok {
		expired = st.watermark-st.meta[s].touched > st.ttl
		st.unlink(s)
	} else {
		s = st.alloc()
		k := string([]byte(key)) // clone: key aliases the Arrow batch
		st.meta[s] = slot{key: k}
		st.index[k] = s
		st.live++
		st.keyBytes += allocSize(len(k))
	}
	if endNs > st.watermark {
		st.watermark = endNs
	}
	st.meta[s].touched = st.watermark
	st.pushFront(s)
	st.markDirty(s)
	return s, expired
}

// reset starts slot s's host afresh, as if expire had dropped it and the
// flow at hand had brought it back: zero state, no flows, no responders.
// It is counted as an expiry.
func (st *store) reset(s int32) {
	m := &st.meta[s]
	m.flows, m.lastNs = 0, 0
	m.peers.Reset()
	h, c := st.state(s)
	clear(h)
	clear(c)
	st.markDirty(s)
	st.evictedTTL++
}

// markDirty records that slot s's state is about to change, for the next
// checkpoint.
func (st *store) markDirty(s int32) {
	if m := &st.meta[s]; st.track && !m.dirty {
		m.dirty = true
		st.dirty = append(st.dirty, s)
	}
}

// restore puts a checkpointed host back: its state, counters and the
// event time it was last seen. Hosts are restored in the order they were
// last seen, so the LRU list comes back in order; the watermark becomes
// the newest of their times. A host already held is overwritten.
func (st *store) restore(key string, ck *checkpoint) {
	if ck.touched > st.watermark {
		st.watermark = ck.touched
	}
	s, ok := st.index[key]
	if ok {
		st.unlink(s)
	} else {
		s = st.alloc()
		k := strings.Clone(key)
		st.meta[s] = slot{key: k}
		st.index[k] = s
		st.live++
		st.keyBytes += allocSize(len(k))
	}
	m := &st.meta[s]
	m.lastNs, m.touched, m.flows, m.peers, m.saved = ck.lastNs, ck.touched, ck.flows, ck.peers, true
	hs, cs := st.state(s)
	copy(hs, ck.h)
	copy(cs, ck.c)
	st.pushFront(s)
}

// alloc returns a free slot with a zero state: the least recently seen
// host's when the store is full, else a released one or a new one.
func (st *store) alloc() int32 {
	if st.live >= st.maxHosts && st.tail != nilSlot && st.meta[st.tail].gen != st.gen {
		st.drop(st.tail)
		st.evictedCap++
	}
	if n := len(st.free); n > 0 {
		s := st.free[n-1]
		st.free = st.free[:n-1]
		return s
	}
	s := int32(len(st.meta))
	st.meta = append(st.meta, slot{})
	if int(s)>>pageShift == len(st.h) {
		st.h = append(st.h, make([]float32, pageSlots*st.hid))
		st.c = append(st.c, make([]float32, pageSlots*st.hid))
	}
	return s
}

// drop releases slot s: its key leaves the index, its state is zeroed for the
// next host and it goes on the free list.
func (st *store) drop(s int32) {
	st.unlink(s)
	m := &st.meta[s]
	delete(st.index, m.key)
	st.keyBytes -= allocSize(len(m.key))
	if st.track && m.saved {
		st.tombs = append(st.tombs, m.key)
	}
	*m = slot{}
	h, c := st.state(s)
	clear(h)
	clear(c)
	st.free = append(st.free, s)
	st.live--
}

// expire drops hosts idle for longer than the TTL, then the least recently
// seen past the cap. It runs between messages, when no plan holds slots.
func (st *store) expire() {
	for st.tail != nilSlot && st.watermark-st.meta[st.tail].touched > st.ttl {
		st.drop(st.tail)
		st.evictedTTL++
	}
	for st.live > st.maxHosts {
		st.drop(st.tail)
		st.evictedCap++
	}
}

// takeEvicted returns the evictions counted since the last call.
func (st *store) takeEvicted() (ttl, capacity int) {
	ttl, capacity = st.evictedTTL, st.evictedCap
	st.evictedTTL, st.evictedCap = 0, 0
	return ttl, capacity
}

func (st *store) unlink(s int32) {
	m := &st.meta[s]
	if m.prev != nilSlot {
		st.meta[m.prev].next = m.next
	} else if st.head == s {
		st.head = m.next
	}
	if m.next != nilSlot {
		st.meta[m.next].prev = m.prev
	} else if st.tail == s {
		st.tail = m.prev
	}
	m.prev, m.next = nilSlot, nilSlot
}

func (st *store) pushFront(s int32) {
	m := &st.meta[s]
	m.prev, m.next = nilSlot, st.head
	if st.head != nilSlot {
		st.meta[st.head].prev = s
	}
	st.head = s
	if st.tail == nilSlot {
		st.tail = s
	}
}

// state returns slot s's hidden and cell state, aliasing the slabs.
func (st *store) state(s int32) (h, c []float32) {
	p := s >> pageShift
	lo := int(s&(pageSlots-1)) * st.hid
	hi := lo + st.hid
	return st.h[p][lo:hi:hi], st.c[p][lo:hi:hi]
}

// bytes estimates the memory the store holds: the slab pages, the slot
// records at their capacity, the free list, the index and the keys.
func (st *store) bytes() int {
	return 2*len(st.h)*pageSlots*st.hid*4 +
		cap(st.meta)*int(unsafe.Sizeof(slot{})) +
		cap(st.free)*4 +
		cap(st.dirty)*4 + cap(st.tombs)*16 +
		len(st.index)*mapEntryBytes +
		st.keyBytes
}

// allocSize is the heap size of an n-byte string: Go's small size classes
// round up to 8 below 32 bytes and to 16 up to 128.
func allocSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= 32:
		return (n + 7) &^ 7
	case n <= 128:
		return (n + 15) &^ 15
	default:
		return (n + 63) &^ 63
	}
}
