package features

import "github.com/metaids/metaids/schemas"

// PeerSlots is how many responders a PeerMemory remembers per host. A beacon
// or an exfiltration drop is contacted every minute or two; an office host
// talks to far fewer than 16 other addresses in that time, so the attack's
// peer stays remembered while the memory costs 264 bytes per host.
const PeerSlots = 16

// PeerMemory is one host's recent responders and when its last flow to
// each started: the per-host state behind dst_repeat and dt_dst. The zero
// value is empty. The scorer keeps one per host state (and checkpoints it),
// the trainer one per training stream, so both compute the same values for
// the same flows in the same order.
type PeerMemory struct {
	Key  [PeerSlots]uint64 // PeerKey of each remembered responder
	Last [PeerSlots]int64  // start of the host's latest flow to it, ns
	N    int               // slots in use, the first N
}

// See records a flow to the responder with key peer starting at startNs and
// returns its dst_repeat and dt_dst values. A responder not remembered takes
// the slot of the one whose latest flow started earliest.
func (m *PeerMemory) See(peer uint64, startNs int64) (seen, dt float32) {
	n := min(max(m.N, 0), PeerSlots) // a corrupt checkpoint cannot index out of range
	oldest := 0
	for i := range n {
		if m.Key[i] == peer {
			dt = DeltaTBetween(m.Last[i], startNs)
			m.Last[i] = startNs
			return 1, dt
		}
		if m.Last[i] < m.Last[oldest] {
			oldest = i
		}
	}
	if n < PeerSlots {
		oldest = n
		n++
	}
	m.N = n
	m.Key[oldest], m.Last[oldest] = peer, startNs
	return 0, 0
}

// Reset empties m, for a host whose state starts afresh.
func (m *PeerMemory) Reset() { m.N = 0 }

// FlowPeerKey returns the PeerKey of f's responder: what the scorer
// computes from the peer column of f's features row, for code that holds
// the flow itself (the trainer, offline eval).
func FlowPeerKey(f *schemas.Flow) uint64 {
	var buf [64]byte // the longest canonical address is 39 bytes; no allocation
	return PeerKey(AppendPeer(buf[:0], f))
}

// PeerKey returns the key PeerMemory remembers a responder by: FNV-1a over
// its canonical address (AppendPeer, or the peer column of a features
// batch). Collisions between a host's 16 recent responders are one in 10^18.
func PeerKey[K ~string | ~[]byte](peer K) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(peer); i++ {
		h ^= uint64(peer[i])
		h *= 1099511628211
	}
	return h
}
