package integration

import (
	"encoding/json"
	"testing"
)

func TestTrafficDeterministicAndOrdered(t *testing.T) {
	a := NewTraffic(Seed(7)).Events(5000)
	b := NewTraffic(Seed(7)).Events(5000)
	seen := map[string]int{}
	for i := range a {
		if a[i].Flow != b[i].Flow || a[i].Label != b[i].Label {
			t.Fatalf("event %d differs between runs with the same seed: %+v vs %+v", i, a[i], b[i])
		}
		if i > 0 && a[i].Flow.StartNs < a[i-1].Flow.StartNs {
			t.Fatalf("event %d starts at %d, before event %d at %d", i, a[i].Flow.StartNs, i-1, a[i-1].Flow.StartNs)
		}
		if a[i].Flow.EndNs < a[i].Flow.StartNs {
			t.Fatalf("event %d ends before it starts", i)
		}
		seen[a[i].Label]++
	}
	for _, fam := range []string{FamilyBenign, FamilyPortScan, FamilySSHBrute, FamilyBeacon} {
		if seen[fam] == 0 {
			t.Errorf("no %s flows in the first 5000 events: %v", fam, seen)
		}
	}
}

func TestAttackFlowsComeFromTheirHost(t *testing.T) {
	tr := NewTraffic(Seed(3), WithScan("10.9.9.9"))
	n := 0
	for _, ev := range tr.Events(3000) {
		isHost := ev.Flow.SrcAddr.String() == "10.9.9.9"
		if isHost != (ev.Label == FamilyPortScan) {
			t.Fatalf("flow from %s labelled %s", ev.Flow.SrcAddr, ev.Label)
		}
		if isHost {
			n++
		}
	}
	if n < 100 {
		t.Errorf("scan flows = %d, want at least 100", n)
	}
}

func TestRenderingsAreJSON(t *testing.T) {
	for _, ev := range NewTraffic(Seed(1)).Events(200) {
		var m map[string]any
		if err := json.Unmarshal(AppendGoflow2JSON(nil, &ev.Flow), &m); err != nil {
			t.Fatalf("goflow2 rendering is not JSON: %v", err)
		}
		if m["src_addr"] != ev.Flow.SrcAddr.String() || m["proto"] == "" {
			t.Fatalf("goflow2 rendering = %v, want src_addr %s", m, ev.Flow.SrcAddr)
		}
		if err := json.Unmarshal(AppendZeekJSON(nil, &ev.Flow, "C1"), &m); err != nil {
			t.Fatalf("zeek rendering is not JSON: %v", err)
		}
	}
}

func TestNProbeRenderingCarriesBothDirections(t *testing.T) {
	for _, ev := range NewTraffic(Seed(2)).Events(100) {
		var m map[string]any
		if err := json.Unmarshal(AppendNProbeJSON(nil, &ev.Flow), &m); err != nil {
			t.Fatalf("nprobe rendering is not JSON: %v", err)
		}
		if got := uint64(m["IN_BYTES"].(float64)); got != ev.Flow.BytesOut {
			t.Fatalf("IN_BYTES = %d, want BytesOut %d", got, ev.Flow.BytesOut)
		}
		if got := uint64(m["OUT_PKTS"].(float64)); got != ev.Flow.PktsIn {
			t.Fatalf("OUT_PKTS = %d, want PktsIn %d", got, ev.Flow.PktsIn)
		}
	}
}
