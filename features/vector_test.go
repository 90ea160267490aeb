package features

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/metaids/metaids/schemas"
)

const t0 = int64(1_700_000_000_000_000_000) // a plausible flow start, ns

func l1p(x float64) float32 { return float32(math.Log1p(x)) }

// scanFlow is one probe of an external SYN scan of an internal SSH server:
// a single SYN, no answer.
func scanFlow() schemas.Flow {
	return schemas.Flow{
		StartNs: t0, EndNs: t0,
		SrcAddr: netip.MustParseAddr("203.0.113.7"), DstAddr: netip.MustParseAddr("10.0.0.5"),
		SrcPort: 54321, DstPort: 22, Proto: 6,
		BytesOut: 44, PktsOut: 1, TCPFlags: 0x02,
		Source: schemas.Coord{Topic: "flows.goflow2", Partition: 3, Offset: 1000},
	}
}

// dnsFlow is an internal client's DNS query and answer.
func dnsFlow() schemas.Flow {
	return schemas.Flow{
		StartNs: t0, EndNs: t0 + 20_000_000,
		SrcAddr: netip.MustParseAddr("192.168.1.10"), DstAddr: netip.MustParseAddr("8.8.8.8"),
		SrcPort: 50000, DstPort: 53, Proto: 17,
		BytesOut: 60, PktsOut: 1, BytesIn: 120, PktsIn: 1,
		TCPFlags: 0x12, // garbage from the shipper: UDP has no flags
		Source:   schemas.Coord{Topic: "flows.zeek", Partition: 0, Offset: 7, Index: 2},
	}
}

// v6Flow is an external IPv6 client fetching over HTTPS from a ULA server.
func v6Flow() schemas.Flow {
	return schemas.Flow{
		StartNs: t0, EndNs: t0 + 2_000_000_000,
		SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("fd12:3456::5"),
		SrcPort: 40000, DstPort: 443, Proto: 6,
		BytesOut: 1500, PktsOut: 10, BytesIn: 30000, PktsIn: 25,
		TCPFlags: 0x1b, // FIN SYN PSH ACK
		Source:   schemas.Coord{Topic: "flows.nprobe", Partition: 1, Offset: 99},
	}
}

func TestVector(t *testing.T) {
	tests := []struct {
		name string
		flow schemas.Flow
		want map[string]float32 // every feature not listed must be 0
	}{
		{"tcp scan", scanFlow(), map[string]float32{
			"log_bytes_out": l1p(44), "log_pkts_out": l1p(1), "log_bpp_out": l1p(44),
			"proto_tcp": 1, "dst_svc_remote": 1, "src_port_ephemeral": 1, "tcp_syn": 1,
			"no_response": 1, "dst_internal": 1,
		}},
		{"dns", dnsFlow(), map[string]float32{
			"log_bytes_out": l1p(60), "log_bytes_in": l1p(120), "log_pkts_out": l1p(1), "log_pkts_in": l1p(1),
			"log_duration_ms": l1p(20), "log_bpp_out": l1p(60), "log_bpp_in": l1p(120),
			"bytes_in_frac": 120.0 / 180, "pkts_in_frac": 0.5, "log_pkt_rate": l1p(1 / 0.02),
			"proto_udp": 1, "dst_svc_dns": 1, "src_port_ephemeral": 1, "src_internal": 1,
		}},
		{"ipv6 https", v6Flow(), map[string]float32{
			"log_bytes_out": l1p(1500), "log_bytes_in": l1p(30000), "log_pkts_out": l1p(10), "log_pkts_in": l1p(25),
			"log_duration_ms": l1p(2000), "log_bpp_out": l1p(150), "log_bpp_in": l1p(1200),
			"bytes_in_frac": 30000.0 / 31500, "pkts_in_frac": 25.0 / 35, "log_pkt_rate": l1p(34.0 / 2),
			"proto_tcp": 1, "dst_svc_web": 1, "src_port_ephemeral": 1,
			"tcp_fin": 1, "tcp_syn": 1, "tcp_psh": 1, "tcp_ack": 1, "dst_internal": 1,
		}},
		{"icmp echo, type in dst port", schemas.Flow{
			StartNs: t0, EndNs: t0 + 1_000_000,
			SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			DstPort: 0x0800, Proto: 1, BytesOut: 84, PktsOut: 1, BytesIn: 84, PktsIn: 1, TCPFlags: 0x02,
		}, map[string]float32{
			"log_bytes_out": l1p(84), "log_bytes_in": l1p(84), "log_pkts_out": l1p(1), "log_pkts_in": l1p(1),
			"log_duration_ms": l1p(1), "log_bpp_out": l1p(84), "log_bpp_in": l1p(84),
			"bytes_in_frac": 0.5, "pkts_in_frac": 0.5, "log_pkt_rate": l1p(1000),
			"proto_icmp": 1, "src_internal": 1, "dst_internal": 1,
		}},
		{"unidirectional smb from a mapped address", schemas.Flow{
			StartNs: t0, EndNs: t0 + 500_000_000,
			SrcAddr: netip.MustParseAddr("::ffff:172.16.4.4"), DstAddr: netip.MustParseAddr("fe80::1%eth0"),
			SrcPort: 800, DstPort: 445, Proto: 6, BytesOut: 4000, PktsOut: 6, TCPFlags: 0x18,
		}, map[string]float32{
			"log_bytes_out": l1p(4000), "log_pkts_out": l1p(6), "log_duration_ms": l1p(500),
			"log_bpp_out": l1p(4000.0 / 6), "log_pkt_rate": l1p(5 / 0.5),
			"proto_tcp": 1, "dst_svc_smb_rpc": 1, "tcp_psh": 1, "tcp_ack": 1,
			"no_response": 1, "src_internal": 1, "dst_internal": 1,
		}},
		{"gre has no ports", schemas.Flow{
			SrcAddr: netip.MustParseAddr("127.0.0.1"), DstAddr: netip.MustParseAddr("::1"),
			SrcPort: 5000, DstPort: 3389, Proto: 47, BytesIn: 10, PktsIn: 1,
		}, map[string]float32{
			"log_bytes_in": l1p(10), "log_pkts_in": l1p(1), "log_bpp_in": l1p(10),
			"bytes_in_frac": 1, "pkts_in_frac": 1, "proto_other": 1,
			"src_internal": 1, "dst_internal": 1,
		}},
		{"sctp to rdp port from privileged port, end before start", schemas.Flow{
			StartNs: t0, EndNs: t0 - 5, SrcAddr: netip.MustParseAddr("198.51.100.1"), DstAddr: netip.MustParseAddr("169.254.0.9"),
			SrcPort: 999, DstPort: 3389, Proto: 132, BytesOut: 100, PktsOut: 2,
		}, map[string]float32{
			"log_bytes_out": l1p(100), "log_pkts_out": l1p(2), "log_bpp_out": l1p(50),
			"proto_other": 1, "dst_svc_rdp": 1, "no_response": 1, "dst_internal": 1,
		}},
	}
	spec := Default()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name := range tc.want {
				if _, ok := spec.Index(name); !ok {
					t.Fatalf("test names unknown feature %q", name)
				}
			}
			got := Vector(nil, &tc.flow)
			if len(got) != NumFeatures {
				t.Fatalf("len(Vector) = %d, want %d", len(got), NumFeatures)
			}
			for j, g := range got {
				name := spec.Feature(j).Name
				w := tc.want[name]
				if math.Abs(float64(g-w)) > 1e-6*math.Max(1, math.Abs(float64(w))) {
					t.Errorf("%s = %v, want %v", name, g, w)
				}
			}
		})
	}
}

// TestVectorAppends checks that Vector appends after existing content and
// reuses spare capacity without allocating.
func TestVectorAppends(t *testing.T) {
	f := v6Flow()
	dst := Vector([]float32{42}, &f)
	if len(dst) != 1+NumFeatures || dst[0] != 42 {
		t.Fatalf("Vector([42], f) = len %d, first %v; want len %d, first 42", len(dst), dst[0], 1+NumFeatures)
	}
	buf := make([]float32, 0, NumFeatures)
	if allocs := testing.AllocsPerRun(100, func() { buf = Vector(buf[:0], &f) }); allocs != 0 {
		t.Errorf("Vector allocated %v times per call, want 0", allocs)
	}
}

// TestVectorFinite throws extreme and random counters and timestamps at
// Vector: every value must be finite, and every one-hot group one-hot.
func TestVectorFinite(t *testing.T) {
	extreme := []uint64{0, 1, math.MaxUint32, math.MaxInt64, math.MaxUint64}
	times := []int64{math.MinInt64, -1, 0, t0, math.MaxInt64}
	rng := rand.New(rand.NewPCG(1, 0))
	var flows []schemas.Flow
	for _, a := range extreme {
		for _, b := range extreme {
			for _, s := range times {
				for _, e := range times {
					flows = append(flows, schemas.Flow{StartNs: s, EndNs: e, BytesOut: a, PktsOut: b, BytesIn: b, PktsIn: a, Proto: 6})
				}
			}
		}
	}
	for range 10000 {
		flows = append(flows, schemas.Flow{
			StartNs: int64(rng.Uint64()), EndNs: int64(rng.Uint64()),
			BytesOut: rng.Uint64() >> rng.IntN(64), BytesIn: rng.Uint64() >> rng.IntN(64),
			PktsOut: rng.Uint64() >> rng.IntN(64), PktsIn: rng.Uint64() >> rng.IntN(64),
			Proto: uint8(rng.Uint32()), SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32()),
			TCPFlags: uint8(rng.Uint32()),
		})
	}
	var v []float32
	for i := range flows {
		v = Vector(v[:0], &flows[i])
		for j, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("flow %+v: feature %s = %v, want finite", flows[i], Default().Feature(j).Name, x)
			}
		}
		if s := v[idxProtoTCP] + v[idxProtoUDP] + v[idxProtoICMP] + v[idxProtoOther]; s != 1 {
			t.Fatalf("flow %+v: protocol one-hot sums to %v, want 1", flows[i], s)
		}
		var svc float32
		for j := idxSvcWeb; j <= idxSvcHigh; j++ {
			svc += v[j]
		}
		if want := b2f(hasPorts(flows[i].Proto)); svc != want {
			t.Fatalf("flow %+v: service one-hot sums to %v, want %v", flows[i], svc, want)
		}
		if f := v[idxBytesInFrac]; f < 0 || f > 1 {
			t.Fatalf("flow %+v: bytes_in_frac = %v, want within [0,1]", flows[i], f)
		}
	}
}

// TestServiceClassMatchesSpec checks serviceClass against the port lists
// the spec's definitions (and so its hash) are generated from.
func TestServiceClassMatchesSpec(t *testing.T) {
	classes := []struct {
		idx   int
		ports []uint16
	}{
		{idxSvcWeb, webPorts[:]}, {idxSvcRemote, remotePorts[:]}, {idxSvcDNS, dnsPorts[:]},
		{idxSvcMail, mailPorts[:]}, {idxSvcSMB, smbPorts[:]}, {idxSvcRDP, rdpPorts[:]}, {idxSvcDB, dbPorts[:]},
	}
	want := map[uint16]int{}
	for _, c := range classes {
		for _, p := range c.ports {
			if prev, dup := want[p]; dup {
				t.Fatalf("port %d in classes %d and %d", p, prev, c.idx)
			}
			want[p] = c.idx
		}
	}
	for p := range 65536 {
		w, ok := want[uint16(p)]
		switch {
		case ok:
		case p < 1024:
			w = idxSvcPrivOther
		default:
			w = idxSvcHigh
		}
		if got := serviceClass(uint16(p)); got != w {
			t.Errorf("serviceClass(%d) = %s, want %s", p, Default().Feature(got).Name, Default().Feature(w).Name)
		}
	}
}

func TestInternal(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true}, {"172.16.0.1", true}, {"172.31.255.255", true}, {"172.32.0.1", false},
		{"192.168.0.1", true}, {"127.0.0.1", true}, {"169.254.1.1", true}, {"8.8.8.8", false},
		{"100.64.0.1", false}, {"::1", true}, {"fc00::1", true}, {"fd12::1", true}, {"fe80::1", true},
		{"fe80::1%eth0", true}, {"2001:db8::1", false}, {"::ffff:10.0.0.1", true}, {"::ffff:8.8.8.8", false},
		{"224.0.0.1", false},
	}
	for _, tc := range tests {
		if got := internal(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("internal(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if internal(netip.Addr{}) {
		t.Errorf("internal(zero Addr) = true, want false")
	}
}

func TestDeltaT(t *testing.T) {
	tests := []struct {
		gap  int64
		want float32
	}{
		{math.MinInt64, 0}, {-1, 0}, {0, 0}, {1_000_000_000, l1p(1)}, {60_000_000_000, l1p(60)},
		{math.MaxInt64, l1p(float64(math.MaxInt64) / 1e9)},
	}
	for _, tc := range tests {
		if got := DeltaT(tc.gap); got != tc.want {
			t.Errorf("DeltaT(%d) = %v, want %v", tc.gap, got, tc.want)
		}
	}
}

func TestDeltaTBetween(t *testing.T) {
	tests := []struct {
		prev, start int64
		want        float32
	}{
		{t0, t0, 0},
		{t0, t0 - 1, 0}, // a long flow exported after a shorter, later one
		{t0, t0 + 2_500_000_000, l1p(2.5)},
		{0, t0, DeltaT(t0)},
		// The int64 difference would wrap negative; the gap is still huge.
		{math.MinInt64, math.MaxInt64, l1p(float64(math.MaxUint64) / 1e9)},
		{math.MaxInt64, math.MinInt64, 0},
	}
	for _, tc := range tests {
		if got := DeltaTBetween(tc.prev, tc.start); got != tc.want {
			t.Errorf("DeltaTBetween(%d, %d) = %v, want %v", tc.prev, tc.start, got, tc.want)
		}
	}
}
