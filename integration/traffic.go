package integration

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"github.com/metaids/metaids/schemas"
)

// Families the generator can inject. Names are the class names a model
// trained on synthetic traffic uses.
const (
	FamilyBenign    = "benign"
	FamilyPortScan  = "portscan"
	FamilySSHBrute  = "ssh_bruteforce"
	FamilyDDoS      = "ddos"
	FamilyBeacon    = "c2_beacon"
	FamilyExfil     = "exfiltration"
	FamilyDNSTunnel = "dns_tunnel"
)

// Families lists every attack family the generator knows, in a fixed order.
var Families = []string{FamilyPortScan, FamilySSHBrute, FamilyDDoS, FamilyBeacon, FamilyExfil, FamilyDNSTunnel}

// Attack is one injected attack: Host runs Family against Target from Start
// (relative to the traffic's start) for Duration.
type Attack struct {
	Family   string
	Host     netip.Addr
	Target   netip.Addr
	Start    time.Duration
	Duration time.Duration
}

// Event is one generated flow with its ground-truth label.
type Event struct {
	Flow  schemas.Flow
	Label string // FamilyBenign or an attack family
}

type config struct {
	seed    uint64
	hosts   int
	start   time.Time
	attacks []Attack
	rate    float64 // benign flows per second per host
}

// Option configures NewTraffic.
type Option func(*config)

// Seed fixes the random source; the default is 1.
func Seed(s uint64) Option { return func(c *config) { c.seed = s } }

// Hosts sets the number of benign internal hosts (default 200).
func Hosts(n int) Option { return func(c *config) { c.hosts = n } }

// Start sets the wall-clock time of the first flow (default 2026-01-01 UTC,
// so tests are deterministic; the demo passes time.Now()).
func Start(t time.Time) Option { return func(c *config) { c.start = t } }

// Rate sets benign flows per second per host (default 0.5).
func Rate(r float64) Option { return func(c *config) { c.rate = r } }

// WithAttack injects an attack.
func WithAttack(a Attack) Option { return func(c *config) { c.attacks = append(c.attacks, a) } }

// WithScan injects a port scan by host starting 5 s in, for 60 s.
func WithScan(host string) Option {
	return WithAttack(Attack{Family: FamilyPortScan, Host: netip.MustParseAddr(host), Target: netip.MustParseAddr("10.0.1.20"), Start: 5 * time.Second, Duration: time.Minute})
}

// WithBeacon injects C2 beaconing by host starting 5 s in, for 10 min.
func WithBeacon(host string) Option {
	return WithAttack(Attack{Family: FamilyBeacon, Host: netip.MustParseAddr(host), Target: netip.MustParseAddr("198.51.100.77"), Start: 5 * time.Second, Duration: 10 * time.Minute})
}

// DefaultAttacks is the demo's scenario: every family, staggered, from
// dedicated hosts so the ground truth per host is unambiguous.
func DefaultAttacks() []Attack {
	a := func(fam, host, target string, start, dur time.Duration) Attack {
		return Attack{Family: fam, Host: netip.MustParseAddr(host), Target: netip.MustParseAddr(target), Start: start, Duration: dur}
	}
	return []Attack{
		a(FamilyPortScan, "10.0.0.9", "10.0.1.20", 10*time.Second, 2*time.Minute),
		a(FamilySSHBrute, "203.0.113.50", "10.0.1.22", 20*time.Second, 3*time.Minute),
		a(FamilyBeacon, "10.0.0.33", "198.51.100.77", 5*time.Second, 30*time.Minute),
		a(FamilyDDoS, "192.0.2.10", "10.0.1.80", 30*time.Second, 2*time.Minute),
		a(FamilyExfil, "10.0.0.44", "198.51.100.200", 35*time.Second, 3*time.Minute),
		a(FamilyDNSTunnel, "10.0.0.55", "10.0.0.2", 25*time.Second, 30*time.Minute),
	}
}

// Traffic generates flows in time order. It is not safe for concurrent use.
type Traffic struct {
	cfg     config
	rng     *rand.Rand
	q       evq
	servers []netip.Addr
	seq     int64
}

// source is one emitter of flows: a benign host or an attack.
type source struct {
	next   int64 // ns of its next flow
	host   netip.Addr
	attack *Attack
	n      int // flows emitted so far
}

type evq []*source

func (q evq) Len() int           { return len(q) }
func (q evq) Less(i, j int) bool { return q[i].next < q[j].next }
func (q evq) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *evq) Push(x any)        { *q = append(*q, x.(*source)) }
func (q *evq) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// NewTraffic returns a generator. Without WithAttack/WithScan/WithBeacon
// options it injects DefaultAttacks.
func NewTraffic(opts ...Option) *Traffic {
	c := config{seed: 1, hosts: 200, start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rate: 0.5}
	for _, o := range opts {
		o(&c)
	}
	if c.attacks == nil {
		c.attacks = DefaultAttacks()
	}
	t := &Traffic{cfg: c, rng: rand.New(rand.NewPCG(c.seed, 0x6d657461))}
	for i := 0; i < 64; i++ {
		t.servers = append(t.servers, netip.AddrFrom4([4]byte{93, 184, byte(t.rng.IntN(256)), byte(1 + t.rng.IntN(250))}))
	}
	base := c.start.UnixNano()
	for i := 0; i < c.hosts; i++ {
		h := netip.AddrFrom4([4]byte{10, 0, byte(2 + i/250), byte(1 + i%250)})
		heap.Push(&t.q, &source{next: base + int64(t.rng.ExpFloat64()/c.rate*1e9), host: h})
	}
	for i := range c.attacks {
		a := &c.attacks[i]
		heap.Push(&t.q, &source{next: base + int64(a.Start), host: a.Host, attack: a})
	}
	return t
}

// Attacks returns the injected attacks.
func (t *Traffic) Attacks() []Attack { return t.cfg.attacks }

// StartTime is the time of the traffic's beginning.
func (t *Traffic) StartTime() time.Time { return t.cfg.start }

// Next returns the next flow in time order.
func (t *Traffic) Next() Event {
	for {
		s := heap.Pop(&t.q).(*source)
		var ev Event
		var gap float64 // seconds to this source's next flow; <0 retires it
		if s.attack == nil {
			ev = t.benign(s)
			gap = t.rng.ExpFloat64() / t.cfg.rate
		} else {
			ev, gap = t.attack(s)
		}
		s.n++
		end := t.cfg.start.UnixNano()
		if s.attack != nil {
			end += int64(s.attack.Start + s.attack.Duration)
		}
		s.next += int64(gap * 1e9)
		if gap >= 0 && (s.attack == nil || s.next < end) {
			heap.Push(&t.q, s)
		}
		if ev.Label == "" {
			continue
		}
		t.seq++
		ev.Flow.Source = schemas.Coord{Topic: "synthetic", Offset: t.seq}
		return ev
	}
}

// Events returns the next n flows.
func (t *Traffic) Events(n int) []Event {
	out := make([]Event, n)
	for i := range out {
		out[i] = t.Next()
	}
	return out
}

func (t *Traffic) lognormal(mu, sigma float64) uint64 {
	return uint64(math.Exp(mu + sigma*t.rng.NormFloat64()))
}

func (t *Traffic) flow(s *source, dst netip.Addr, dport uint16, proto uint8) schemas.Flow {
	return schemas.Flow{
		StartNs: s.next, SrcAddr: s.host, DstAddr: dst,
		SrcPort: uint16(32768 + t.rng.IntN(28000)), DstPort: dport, Proto: proto,
	}
}

func (t *Traffic) benign(s *source) Event {
	r := t.rng.Float64()
	var f schemas.Flow
	switch {
	case r < 0.55: // web browsing
		port := uint16(443)
		if t.rng.Float64() < 0.2 {
			port = 80
		}
		f = t.flow(s, t.servers[t.rng.IntN(len(t.servers))], port, 6)
		f.PktsOut = 4 + uint64(t.rng.IntN(20))
		f.PktsIn = f.PktsOut + uint64(t.rng.IntN(40))
		f.BytesOut = f.PktsOut*60 + t.lognormal(6.5, 1)
		f.BytesIn = f.PktsIn*60 + t.lognormal(9.5, 1.5)
		f.TCPFlags = 0x1b // FIN SYN PSH ACK
		f.EndNs = f.StartNs + int64(t.lognormal(19.5, 1.2))
	case r < 0.8: // DNS to the internal resolver
		f = t.flow(s, netip.AddrFrom4([4]byte{10, 0, 0, 2}), 53, 17)
		f.PktsOut, f.PktsIn = 1, 1
		f.BytesOut = 60 + uint64(t.rng.IntN(30))
		f.BytesIn = 90 + uint64(t.rng.IntN(200))
		f.EndNs = f.StartNs + int64(t.lognormal(16, 0.5))
	case r < 0.92: // internal file share
		f = t.flow(s, netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + t.rng.IntN(5))}), 445, 6)
		f.PktsOut = 8 + uint64(t.rng.IntN(50))
		f.PktsIn = f.PktsOut + uint64(t.rng.IntN(50))
		f.BytesOut = f.PktsOut*80 + t.lognormal(8, 1.5)
		f.BytesIn = f.PktsIn*80 + t.lognormal(10, 1.5)
		f.TCPFlags = 0x1b
		f.EndNs = f.StartNs + int64(t.lognormal(20, 1))
	default: // NTP and other UDP housekeeping
		f = t.flow(s, netip.AddrFrom4([4]byte{10, 0, 0, 3}), 123, 17)
		f.PktsOut, f.PktsIn, f.BytesOut, f.BytesIn = 1, 1, 76, 76
		f.EndNs = f.StartNs + int64(t.lognormal(15, 0.3))
	}
	return Event{Flow: f, Label: FamilyBenign}
}

// attack returns the attack's next flow and the gap to the one after it.
func (t *Traffic) attack(s *source) (Event, float64) {
	a := s.attack
	var f schemas.Flow
	var gap float64
	switch a.Family {
	case FamilyPortScan: // SYN to successive ports, RST or nothing back
		f = t.flow(s, a.Target, uint16(1+s.n%65535), 6)
		f.PktsOut, f.BytesOut, f.TCPFlags = 1, 44, 0x02
		if t.rng.Float64() < 0.8 {
			f.PktsIn, f.BytesIn, f.TCPFlags = 1, 40, 0x16 // SYN, RST+ACK back
		}
		f.EndNs = f.StartNs + int64(t.rng.IntN(2e6))
		gap = 0.02 + 0.02*t.rng.Float64()
	case FamilySSHBrute: // short failed sessions to 22
		f = t.flow(s, a.Target, 22, 6)
		f.PktsOut = 10 + uint64(t.rng.IntN(6))
		f.PktsIn = 9 + uint64(t.rng.IntN(6))
		f.BytesOut = 1500 + uint64(t.rng.IntN(600))
		f.BytesIn = 2200 + uint64(t.rng.IntN(600))
		f.TCPFlags = 0x1b
		f.EndNs = f.StartNs + int64(1.5e9+t.rng.Float64()*1e9)
		gap = 0.3 + 0.4*t.rng.Float64()
	case FamilyDDoS: // UDP flood of large datagrams, no answer
		f = t.flow(s, a.Target, 80, 17)
		f.PktsOut = 200 + uint64(t.rng.IntN(100))
		f.BytesOut = f.PktsOut * 1400
		f.EndNs = f.StartNs + int64(1e8+t.rng.Float64()*1e8)
		gap = 0.05 + 0.05*t.rng.Float64()
	case FamilyBeacon: // periodic, near-constant small check-ins
		f = t.flow(s, a.Target, 443, 6)
		f.PktsOut, f.PktsIn = 5, 4
		f.BytesOut = 620 + uint64(t.rng.IntN(20))
		f.BytesIn = 410 + uint64(t.rng.IntN(20))
		f.TCPFlags = 0x1b
		f.EndNs = f.StartNs + int64(2e8+t.rng.Float64()*2e7)
		gap = 5 + 0.2*t.rng.Float64()
	case FamilyExfil: // long uploads to one external host
		f = t.flow(s, a.Target, 443, 6)
		f.PktsOut = 2000 + uint64(t.rng.IntN(2000))
		f.PktsIn = f.PktsOut / 2
		f.BytesOut = f.PktsOut * 1300
		f.BytesIn = f.PktsIn * 60
		f.TCPFlags = 0x1b
		f.EndNs = f.StartNs + int64(5e9+t.rng.Float64()*5e9)
		gap = 2 + 2*t.rng.Float64()
	case FamilyDNSTunnel: // steady stream of large TXT-sized queries
		f = t.flow(s, a.Target, 53, 17)
		f.PktsOut, f.PktsIn = 1, 1
		f.BytesOut = 230 + uint64(t.rng.IntN(25))
		f.BytesIn = 480 + uint64(t.rng.IntN(40))
		f.EndNs = f.StartNs + int64(t.lognormal(16.5, 0.3))
		gap = 0.5 + 0.2*t.rng.Float64()
	default:
		return Event{}, -1
	}
	return Event{Flow: f, Label: a.Family}, gap
}

// protoName maps the protocol numbers the generator uses to goflow2's names.
func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 1:
		return "ICMP"
	}
	return strconv.Itoa(int(p))
}

// AppendGoflow2JSON renders the originator direction of f as goflow2's
// default JSON output (goflow2 records are unidirectional; the reverse
// direction would be a record of its own keyed by the responder).
func AppendGoflow2JSON(dst []byte, f *schemas.Flow) []byte {
	dst = append(dst, `{"type":"IPFIX","time_received_ns":`...)
	dst = strconv.AppendInt(dst, f.EndNs+int64(time.Second), 10)
	dst = append(dst, `,"sequence_num":1,"sampling_rate":0,"sampler_address":"127.0.0.1","time_flow_start_ns":`...)
	dst = strconv.AppendInt(dst, f.StartNs, 10)
	dst = append(dst, `,"time_flow_end_ns":`...)
	dst = strconv.AppendInt(dst, f.EndNs, 10)
	dst = append(dst, `,"bytes":`...)
	dst = strconv.AppendUint(dst, f.BytesOut, 10)
	dst = append(dst, `,"packets":`...)
	dst = strconv.AppendUint(dst, f.PktsOut, 10)
	dst = append(dst, `,"src_addr":"`...)
	dst = f.SrcAddr.AppendTo(dst)
	dst = append(dst, `","dst_addr":"`...)
	dst = f.DstAddr.AppendTo(dst)
	etype := "IPv4"
	if f.SrcAddr.Is6() {
		etype = "IPv6"
	}
	dst = append(dst, `","etype":"`+etype+`","proto":"`...)
	dst = append(dst, protoName(f.Proto)...)
	dst = append(dst, `","src_port":`...)
	dst = strconv.AppendUint(dst, uint64(f.SrcPort), 10)
	dst = append(dst, `,"dst_port":`...)
	dst = strconv.AppendUint(dst, uint64(f.DstPort), 10)
	dst = append(dst, `,"in_if":0,"out_if":0,"tcp_flags":`...)
	dst = strconv.AppendUint(dst, uint64(f.TCPFlags), 10)
	dst = append(dst, `,"icmp_type":0,"icmp_code":0,"src_as":0,"dst_as":0,"next_hop":"","src_net":"0.0.0.0/0","dst_net":"0.0.0.0/0","bgp_communities":[],"as_path":[]}`...)
	return dst
}

// AppendZeekJSON renders f as a Zeek conn.log JSON line (bidirectional), the
// format file tailers such as rsyslog or syslog-ng ship.
func AppendZeekJSON(dst []byte, f *schemas.Flow, uid string) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendFloat(dst, float64(f.StartNs)/1e9, 'f', 6, 64)
	dst = append(dst, `,"uid":"`...)
	dst = append(dst, uid...)
	dst = append(dst, `","id.orig_h":"`...)
	dst = f.SrcAddr.AppendTo(dst)
	dst = append(dst, `","id.orig_p":`...)
	dst = strconv.AppendUint(dst, uint64(f.SrcPort), 10)
	dst = append(dst, `,"id.resp_h":"`...)
	dst = f.DstAddr.AppendTo(dst)
	dst = append(dst, `","id.resp_p":`...)
	dst = strconv.AppendUint(dst, uint64(f.DstPort), 10)
	proto := "tcp"
	switch f.Proto {
	case 17:
		proto = "udp"
	case 1:
		proto = "icmp"
	}
	dst = append(dst, `,"proto":"`+proto+`","duration":`...)
	dst = strconv.AppendFloat(dst, float64(f.EndNs-f.StartNs)/1e9, 'f', 6, 64)
	ip := func(dst []byte, key string, v uint64) []byte {
		dst = append(dst, `,"`+key+`":`...)
		return strconv.AppendUint(dst, v, 10)
	}
	dst = ip(dst, "orig_bytes", payload(f.BytesOut, f.PktsOut))
	dst = ip(dst, "resp_bytes", payload(f.BytesIn, f.PktsIn))
	state := "SF"
	switch {
	case f.Proto == 6 && f.PktsIn == 0:
		state = "S0"
	case f.Proto == 6 && f.TCPFlags&0x04 != 0 && f.TCPFlags&0x01 == 0:
		state = "REJ"
	}
	dst = append(dst, `,"conn_state":"`+state+`","missed_bytes":0`...)
	dst = ip(dst, "orig_pkts", f.PktsOut)
	dst = ip(dst, "orig_ip_bytes", f.BytesOut)
	dst = ip(dst, "resp_pkts", f.PktsIn)
	dst = ip(dst, "resp_ip_bytes", f.BytesIn)
	return append(dst, '}')
}

func payload(ipBytes, pkts uint64) uint64 {
	if h := pkts * 40; ipBytes > h {
		return ipBytes - h
	}
	return 0
}

// String describes an attack for logs and the demo's legend.
func (a Attack) String() string {
	return fmt.Sprintf("%s from %s to %s at +%s for %s", a.Family, a.Host, a.Target, a.Start, a.Duration)
}

// AppendNProbeJSON renders f as nProbe's JSON export (NetFlow v9 template
// names). nProbe is a biflow probe, so unlike goflow2 the record carries
// both directions and the TCP flags of the whole conversation: the demo
// ships synthetic traffic this way, so the scorer sees what the model was
// trained on.
func AppendNProbeJSON(dst []byte, f *schemas.Flow) []byte {
	src, dstKey := "IPV4_SRC_ADDR", "IPV4_DST_ADDR"
	if f.SrcAddr.Is6() {
		src, dstKey = "IPV6_SRC_ADDR", "IPV6_DST_ADDR"
	}
	num := func(dst []byte, key string, v uint64) []byte {
		dst = append(dst, `,"`+key+`":`...)
		return strconv.AppendUint(dst, v, 10)
	}
	dst = append(dst, `{"`+src+`":"`...)
	dst = f.SrcAddr.AppendTo(dst)
	dst = append(dst, `","`+dstKey+`":"`...)
	dst = f.DstAddr.AppendTo(dst)
	dst = append(dst, '"')
	dst = num(dst, "L4_SRC_PORT", uint64(f.SrcPort))
	dst = num(dst, "L4_DST_PORT", uint64(f.DstPort))
	dst = num(dst, "PROTOCOL", uint64(f.Proto))
	dst = num(dst, "IN_BYTES", f.BytesOut)
	dst = num(dst, "OUT_BYTES", f.BytesIn)
	dst = num(dst, "IN_PKTS", f.PktsOut)
	dst = num(dst, "OUT_PKTS", f.PktsIn)
	dst = num(dst, "TCP_FLAGS", uint64(f.TCPFlags))
	dst = num(dst, "FLOW_START_MILLISECONDS", uint64(f.StartNs/1e6))
	dst = num(dst, "FLOW_END_MILLISECONDS", uint64(f.EndNs/1e6))
	dst = num(dst, "FLOW_DURATION_MILLISECONDS", uint64((f.EndNs-f.StartNs)/1e6))
	return append(dst, '}')
}
