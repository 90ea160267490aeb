package features

import (
	"net/netip"
	"testing"

	"github.com/metaids/metaids/schemas"
)

func TestPeerMemory(t *testing.T) {
	var m PeerMemory
	s := int64(1e9)
	if seen, dt := m.See(PeerKey("198.51.100.7"), 10*s); seen != 0 || dt != 0 {
		t.Errorf("first flow to a responder: dst_repeat, dt_dst = %v, %v; want 0, 0", seen, dt)
	}
	if seen, dt := m.See(PeerKey("198.51.100.7"), 70*s); seen != 1 || dt != DeltaT(60*s) {
		t.Errorf("again 60 s later: %v, %v; want 1, %v", seen, dt, DeltaT(60*s))
	}
	// A flow exported late, starting before the remembered one: seen, gap 0.
	if seen, dt := m.See(PeerKey("198.51.100.7"), 65*s); seen != 1 || dt != 0 {
		t.Errorf("a start before the last: %v, %v; want 1, 0", seen, dt)
	}
	// PeerSlots other responders push out the one whose latest flow started
	// earliest; a responder seen again meanwhile survives.
	for i := range PeerSlots {
		m.See(PeerKey([]byte{'a', byte(i)}), int64(100+i)*s)
		if i == PeerSlots/2 {
			m.See(PeerKey("198.51.100.7"), int64(100+i)*s)
		}
	}
	if m.N != PeerSlots {
		t.Fatalf("N = %d, want %d", m.N, PeerSlots)
	}
	if seen, _ := m.See(PeerKey("198.51.100.7"), 200*s); seen != 1 {
		t.Errorf("a responder seen again was pushed out")
	}
	if seen, _ := m.See(PeerKey([]byte{'a', 0}), 201*s); seen != 0 {
		t.Errorf("the oldest responder was not pushed out")
	}
	m.Reset()
	if seen, _ := m.See(PeerKey("198.51.100.7"), 300*s); seen != 0 {
		t.Errorf("after Reset a responder is still remembered")
	}
	// A corrupt count (from a checkpoint) must not index out of range.
	bad := PeerMemory{N: 1 << 20}
	bad.See(1, 1)
	bad = PeerMemory{N: -3}
	if seen, _ := bad.See(1, 1); seen != 0 || bad.N != 1 {
		t.Errorf("negative N: seen %v, N %d; want 0, 1", seen, bad.N)
	}
}

func TestPeerKeyAgreesForStringAndBytes(t *testing.T) {
	if PeerKey("10.0.0.1") != PeerKey([]byte("10.0.0.1")) || PeerKey("10.0.0.1") == PeerKey("10.0.0.2") {
		t.Errorf("PeerKey: string and bytes must agree, distinct addresses differ")
	}
}

func TestFlowPeerKeyAllocatesNothing(t *testing.T) {
	f := schemas.Flow{DstAddr: netip.MustParseAddr("2001:db8:85a3:8d3:1319:8a2e:370:7348")}
	if n := testing.AllocsPerRun(100, func() { FlowPeerKey(&f) }); n != 0 {
		t.Errorf("FlowPeerKey allocates %v times per call, want 0", n)
	}
}
