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

// Sequence-only attack families. Each of their flows is drawn from the
// distribution of a benign flow kind of ProfileOffice (beacon: KindPoll,
// scan: KindFailed, exfiltration: KindUpload, stuffing: KindLogin), so no
// single flow gives them away; only the rate, timing and destinations of
// a host's flows do. They run from hosts that keep their benign traffic
// going (see SequenceScenario), so attack flows interleave with benign ones.
const (
	// FamilySlowBeacon checks in with Target:443 every Period (±Jitter),
	// each check-in a poll-sized exchange of similar size: the implant's
	// sizes are drawn once from KindPoll, then vary by 10%.
	FamilySlowBeacon = "slow_beacon"
	// FamilySlowScan probes Span consecutive addresses from Target, one
	// every Period (±Jitter), on the ports and with the refused or
	// unanswered outcome of KindFailed.
	FamilySlowScan = "slow_scan"
	// FamilySlowExfil uploads to Target:443 every Period (±Jitter), each
	// upload a KindUpload flow (compressed chunks vary in size).
	FamilySlowExfil = "slow_exfiltration"
	// FamilyCredStuffing tries a sign-in at Target:443 every Period
	// (±Jitter), each one a KindLogin exchange.
	FamilyCredStuffing = "credential_stuffing"
)

// Families lists the default scenario's attack families, in a fixed order.
var Families = []string{FamilyPortScan, FamilySSHBrute, FamilyDDoS, FamilyBeacon, FamilyExfil, FamilyDNSTunnel}

// SequenceFamilies lists the sequence-only attack families, in a fixed
// order.
var SequenceFamilies = []string{FamilySlowBeacon, FamilySlowScan, FamilySlowExfil, FamilyCredStuffing}

// Benign flow kinds, the Kind of a benign Event. ProfileDefault draws web,
// DNS, SMB and NTP flows; ProfileOffice draws the others too.
const (
	KindWeb    = "web"    // browsing: HTTPS or HTTP, download-heavy
	KindDNS    = "dns"    // queries to the internal resolver
	KindSMB    = "smb"    // the internal file share
	KindNTP    = "ntp"    // the internal time server
	KindPoll   = "poll"   // a short HTTPS API call or keep-alive; FamilySlowBeacon's disguise
	KindUpload = "upload" // an HTTPS upload of tens of KB; FamilySlowExfil's disguise
	KindLogin  = "login"  // an HTTPS sign-in; FamilyCredStuffing's disguise
	KindFailed = "failed" // a refused or unanswered internal connection (a stale share, a printer gone); FamilySlowScan's disguise
)

// Routine kinds: periodic benign jobs (see Routine), so that neither
// periodicity nor many flows to one destination is by itself a sign of an
// attack.
const (
	// RoutineNTP polls an external NTP server every Period (ntpd's poll
	// intervals are powers of two, 64 to 1024 s), with 2% jitter.
	RoutineNTP = "ntp_sync"
	// RoutineUpdate checks an update server every Period, each check a
	// KindPoll exchange of similar size (drawn once, then varied by 10%),
	// like a beacon's.
	RoutineUpdate = "update_check"
	// RoutineBackup uploads Chunks KindUpload flows back to back (3 to 10 s
	// apart) to Target every Period: many uploads to one destination, as
	// exfiltration makes, but in bursts.
	RoutineBackup = "backup"
)

// Session kinds: short benign runs of Count flows, one every Period
// (±Jitter), each made exactly as one sequence family makes its flows, so
// that no single attack flow, nor its gap to the host's last flow to the
// same destination (dt_dst), tells it from a benign one. What a session
// does not have is the attack's persistence: a handful of flows, not
// hours of them.
const (
	// SessionPolling is a web app polling its server while a page is open:
	// FamilySlowBeacon's flows (one KindPoll exchange repeated, sizes
	// varied by 10%).
	SessionPolling = "app_polling"
	// SessionScanLike is a client trying a list of stale addresses in turn
	// (printer discovery, a share browser): FamilySlowScan's flows, to
	// consecutive addresses from Target.
	SessionScanLike = "stale_sweep"
	// SessionAutosave is an editor saving a document to a cloud store while
	// someone edits it: FamilySlowExfil's flows (KindUpload).
	SessionAutosave = "autosave"
	// SessionLoginRetry is a person or a misconfigured client retrying a
	// sign-in: FamilyCredStuffing's flows (KindLogin).
	SessionLoginRetry = "login_retry"
)

// Sessions lists the session kinds, each in the place of the family it
// imitates in SequenceFamilies.
var Sessions = []string{SessionPolling, SessionScanLike, SessionAutosave, SessionLoginRetry}

// Routines lists the routine and session kinds in a fixed order: every Kind
// of a benign Event that is not a flow kind.
var Routines = append([]string{RoutineNTP, RoutineUpdate, RoutineBackup}, Sessions...)

// sessionFamily is the family each session kind imitates, from the
// places of both in Sessions and SequenceFamilies.
var sessionFamily = func() map[string]string {
	m := make(map[string]string, len(Sessions))
	for i, s := range Sessions {
		m[s] = SequenceFamilies[i]
	}
	return m
}()

// Profile is a mix of benign traffic.
type Profile uint8

// Profiles.
const (
	// ProfileDefault is the demo's mix: per flow, web 55%, DNS 25%, SMB
	// 12%, NTP 8%, every host at Rate.
	ProfileDefault Profile = iota
	// ProfileOffice adds the benign kinds the sequence families imitate:
	// web 43%, DNS 20%, SMB 10%, poll 6%, upload 5%, login 5%, failed 5%,
	// NTP 6%. The look-alike kinds are common enough that a detector
	// flagging every such flow would flag 5 to 6% of benign traffic each,
	// and rare enough that a host running an attack has clearly more of
	// them. Each host's rate is Rate times a factor drawn once per host
	// from lognormal(0, 0.5), because hosts differ in how busy they are.
	ProfileOffice
)

// Attack is one injected attack: Host runs Family against Target from Start
// (relative to the traffic's start) for Duration. Period, Jitter and Span
// shape the sequence families only; the default families have fixed rates.
type Attack struct {
	Family   string
	Host     netip.Addr
	Target   netip.Addr
	Start    time.Duration
	Duration time.Duration
	// Period is the mean time between a sequence family's flows; 0 picks
	// the family's default: beacon 60 s, scan 30 s, exfiltration 120 s,
	// stuffing 45 s.
	Period time.Duration
	// Jitter spreads each gap uniformly over Period·[1−Jitter, 1+Jitter];
	// 0 picks 0.2. It is clamped to [0, 0.95].
	Jitter float64
	// Span is how many consecutive addresses from Target a slow scan
	// probes, in turn, starting over after the last; 0 picks 254.
	Span int
}

// Routine is a periodic benign job on Host from Start for Duration (see
// RoutineNTP, RoutineUpdate and RoutineBackup), or a session of Count flows
// from Start (see Sessions). Its flows are labelled benign.
type Routine struct {
	Kind     string
	Host     netip.Addr
	Target   netip.Addr // the NTP server, update server or backup store
	Start    time.Duration
	Duration time.Duration
	// Period is the time from one run to the next (for a backup, from the
	// end of one run to the start of the next; for a session, from one
	// flow to the next). Required: a routine without one emits nothing.
	Period time.Duration
	// Jitter spreads each period uniformly over Period·[1−Jitter,
	// 1+Jitter], clamped to [0, 0.95].
	Jitter float64
	// Chunks is the number of uploads of one backup run; 0 picks 20.
	Chunks int
	// Count is the number of flows of a session; 0 picks 5. A session
	// also ends at Start+Duration if that comes first.
	Count int
}

// Event is one generated flow with its ground-truth label.
type Event struct {
	Flow  schemas.Flow
	Label string // FamilyBenign or an attack family
	// Kind is what made the flow: for a benign flow its kind (KindWeb …)
	// or routine (RoutineNTP …), for an attack its family.
	Kind string
}

type config struct {
	seed     uint64
	hosts    int
	hostBase int
	start    time.Time
	attacks  []Attack
	routines []Routine
	rate     float64 // benign flows per second per host
	profile  Profile
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

// WithAttacks injects exactly these attacks: none when called without any,
// where leaving out every attack option injects DefaultAttacks.
func WithAttacks(as ...Attack) Option {
	return func(c *config) { c.attacks = append(make([]Attack, 0, len(as)), as...) }
}

// WithRoutine adds a periodic benign job.
func WithRoutine(r Routine) Option { return func(c *config) { c.routines = append(c.routines, r) } }

// WithProfile sets the benign traffic mix (default ProfileDefault).
func WithProfile(p Profile) Option { return func(c *config) { c.profile = p } }

// FirstHost numbers the benign hosts from i: they are HostAddr(i) to
// HostAddr(i+n−1) for Hosts(n). Two generators with disjoint ranges have no
// host in common. Default 0.
func FirstHost(i int) Option { return func(c *config) { c.hostBase = i } }

// HostAddr returns the address of benign host i: 10.0.(2+i/250).(1+i%250),
// for i from 0 to 63249.
func HostAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, byte(2 + i/250), byte(1 + i%250)})
}

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

// source is one emitter of flows: a benign host, an attack or a routine.
type source struct {
	next    int64 // ns of its next flow
	host    netip.Addr
	attack  *Attack
	routine *Routine
	n       int     // flows emitted so far
	rate    float64 // a benign host's flows per second
	// tmpl is the flow a beacon or an update check repeats with small
	// variations, drawn at its first flow.
	tmpl schemas.Flow
	left int // uploads left in the current backup run
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
		rate := c.rate
		if c.profile == ProfileOffice {
			rate *= math.Exp(0.5 * t.rng.NormFloat64())
		}
		heap.Push(&t.q, &source{next: base + int64(t.rng.ExpFloat64()/rate*1e9), host: HostAddr(c.hostBase + i), rate: rate})
	}
	for i := range c.attacks {
		a := &c.attacks[i]
		heap.Push(&t.q, &source{next: base + int64(a.Start), host: a.Host, attack: a})
	}
	for i := range c.routines {
		r := &c.routines[i]
		heap.Push(&t.q, &source{next: base + int64(r.Start), host: r.Host, routine: r})
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
		end := t.cfg.start.UnixNano()
		switch {
		case s.attack != nil:
			ev, gap = t.attack(s)
			end += int64(s.attack.Start + s.attack.Duration)
		case s.routine != nil:
			ev, gap = t.routine(s)
			end += int64(s.routine.Start + s.routine.Duration)
		case t.cfg.profile == ProfileOffice:
			ev = t.office(s)
			gap = t.rng.ExpFloat64() / s.rate
			end = math.MaxInt64
		default:
			ev = t.benign(s)
			gap = t.rng.ExpFloat64() / t.cfg.rate
			end = math.MaxInt64
		}
		s.n++
		s.next += int64(gap * 1e9)
		if gap >= 0 && s.next < end {
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
	switch {
	case r < 0.55:
		return Event{Flow: t.web(s), Label: FamilyBenign, Kind: KindWeb}
	case r < 0.8:
		return Event{Flow: t.dns(s), Label: FamilyBenign, Kind: KindDNS}
	case r < 0.92:
		return Event{Flow: t.smb(s), Label: FamilyBenign, Kind: KindSMB}
	default:
		return Event{Flow: t.ntp(s, netip.AddrFrom4([4]byte{10, 0, 0, 3})), Label: FamilyBenign, Kind: KindNTP}
	}
}

// office draws a ProfileOffice flow: the default kinds plus the sequence
// families' disguises, in the shares ProfileOffice documents.
func (t *Traffic) office(s *source) Event {
	r := t.rng.Float64()
	var f schemas.Flow
	var kind string
	switch {
	case r < 0.43:
		f, kind = t.web(s), KindWeb
	case r < 0.63:
		f, kind = t.dns(s), KindDNS
	case r < 0.73:
		f, kind = t.smb(s), KindSMB
	case r < 0.79:
		f, kind = t.poll(s, t.server()), KindPoll
	case r < 0.84:
		f, kind = t.upload(s, t.server()), KindUpload
	case r < 0.89:
		f, kind = t.login(s, t.server()), KindLogin
	case r < 0.94:
		// A few stale internal services, so a host's failures repeat
		// destinations, where a scan's do not.
		f, kind = t.failed(s, netip.AddrFrom4([4]byte{10, 0, 1, byte(100 + t.rng.IntN(8))})), KindFailed
	default:
		f, kind = t.ntp(s, netip.AddrFrom4([4]byte{10, 0, 0, 3})), KindNTP
	}
	return Event{Flow: f, Label: FamilyBenign, Kind: kind}
}

func (t *Traffic) server() netip.Addr { return t.servers[t.rng.IntN(len(t.servers))] }

func (t *Traffic) web(s *source) schemas.Flow {
	port := uint16(443)
	if t.rng.Float64() < 0.2 {
		port = 80
	}
	f := t.flow(s, t.servers[t.rng.IntN(len(t.servers))], port, 6)
	f.PktsOut = 4 + uint64(t.rng.IntN(20))
	f.PktsIn = f.PktsOut + uint64(t.rng.IntN(40))
	f.BytesOut = f.PktsOut*60 + t.lognormal(6.5, 1)
	f.BytesIn = f.PktsIn*60 + t.lognormal(9.5, 1.5)
	f.TCPFlags = 0x1b // FIN SYN PSH ACK
	f.EndNs = f.StartNs + int64(t.lognormal(19.5, 1.2))
	return f
}

func (t *Traffic) dns(s *source) schemas.Flow {
	f := t.flow(s, netip.AddrFrom4([4]byte{10, 0, 0, 2}), 53, 17)
	f.PktsOut, f.PktsIn = 1, 1
	f.BytesOut = 60 + uint64(t.rng.IntN(30))
	f.BytesIn = 90 + uint64(t.rng.IntN(200))
	f.EndNs = f.StartNs + int64(t.lognormal(16, 0.5))
	return f
}

func (t *Traffic) smb(s *source) schemas.Flow {
	f := t.flow(s, netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + t.rng.IntN(5))}), 445, 6)
	f.PktsOut = 8 + uint64(t.rng.IntN(50))
	f.PktsIn = f.PktsOut + uint64(t.rng.IntN(50))
	f.BytesOut = f.PktsOut*80 + t.lognormal(8, 1.5)
	f.BytesIn = f.PktsIn*80 + t.lognormal(10, 1.5)
	f.TCPFlags = 0x1b
	f.EndNs = f.StartNs + int64(t.lognormal(20, 1))
	return f
}

func (t *Traffic) ntp(s *source, dst netip.Addr) schemas.Flow {
	f := t.flow(s, dst, 123, 17)
	f.PktsOut, f.PktsIn, f.BytesOut, f.BytesIn = 1, 1, 76, 76
	f.EndNs = f.StartNs + int64(t.lognormal(15, 0.3))
	return f
}

// poll is a short HTTPS request and answer: about 570 bytes out, 900 in,
// 150 ms.
func (t *Traffic) poll(s *source, dst netip.Addr) schemas.Flow {
	f := t.flow(s, dst, 443, 6)
	f.PktsOut = 4 + uint64(t.rng.IntN(4))
	f.PktsIn = 3 + uint64(t.rng.IntN(4))
	f.BytesOut = f.PktsOut*60 + t.lognormal(5.8, 0.4)
	f.BytesIn = f.PktsIn*60 + t.lognormal(6.5, 0.8)
	f.TCPFlags = 0x1b
	f.EndNs = f.StartNs + int64(t.lognormal(18.8, 0.6))
	return f
}

// upload sends a median 30 KB (6 to 150 KB) and gets a short answer.
func (t *Traffic) upload(s *source, dst netip.Addr) schemas.Flow {
	f := t.flow(s, dst, 443, 6)
	body := t.lognormal(10.3, 0.8)
	f.PktsOut = 3 + body/1300 + uint64(t.rng.IntN(4))
	f.PktsIn = 2 + f.PktsOut/2
	f.BytesOut = f.PktsOut*60 + body
	f.BytesIn = f.PktsIn*60 + t.lognormal(6, 0.5)
	f.TCPFlags = 0x1b
	f.EndNs = f.StartNs + int64(t.lognormal(20.2, 0.7))
	return f
}

// login is a TLS handshake and a credentials POST: about 1.6 KB out, 4 KB
// in, 330 ms.
func (t *Traffic) login(s *source, dst netip.Addr) schemas.Flow {
	f := t.flow(s, dst, 443, 6)
	f.PktsOut = 8 + uint64(t.rng.IntN(5))
	f.PktsIn = 7 + uint64(t.rng.IntN(5))
	f.BytesOut = f.PktsOut*60 + t.lognormal(7.0, 0.25)
	f.BytesIn = f.PktsIn*60 + t.lognormal(8.2, 0.35)
	f.TCPFlags = 0x1b
	f.EndNs = f.StartNs + int64(t.lognormal(19.6, 0.4))
	return f
}

// failedPorts are the services a failed internal connection tries, and a
// slow scan probes, with their weights.
var failedPorts = [...]struct {
	port uint16
	w    float64
}{{445, 0.4}, {80, 0.15}, {443, 0.15}, {3389, 0.1}, {139, 0.1}, {22, 0.1}}

// failed is a connection that was refused (SYN, RST+ACK back, 40%) or went
// unanswered (one to three SYNs, 1 s and 2 s apart, as TCP retransmits,
// 60%).
func (t *Traffic) failed(s *source, dst netip.Addr) schemas.Flow {
	r := t.rng.Float64()
	port := failedPorts[len(failedPorts)-1].port
	for _, p := range failedPorts {
		if r < p.w {
			port = p.port
			break
		}
		r -= p.w
	}
	f := t.flow(s, dst, port, 6)
	if t.rng.Float64() < 0.4 {
		f.PktsOut, f.BytesOut, f.PktsIn, f.BytesIn, f.TCPFlags = 1, 52, 1, 40, 0x16
		f.EndNs = f.StartNs + int64(t.lognormal(13, 0.5))
		return f
	}
	f.PktsOut = 1 + uint64(t.rng.IntN(3))
	f.BytesOut, f.TCPFlags = f.PktsOut*52, 0x02
	f.EndNs = f.StartNs + int64((1<<(f.PktsOut-1))-1)*1e9 + int64(t.rng.IntN(1e7))
	return f
}

// vary returns f with its byte counts scaled by 1 ± rel (normal), keeping
// f's packet counts: a repeated exchange of an implant or a routine.
func (t *Traffic) vary(f schemas.Flow, rel float64) schemas.Flow {
	scale := func(b, pkts uint64) uint64 {
		v := uint64(math.Max(0, float64(b)*(1+rel*t.rng.NormFloat64())))
		return max(v, pkts*40)
	}
	f.BytesOut = scale(f.BytesOut, f.PktsOut)
	f.BytesIn = scale(f.BytesIn, f.PktsIn)
	return f
}

// repeat returns the next flow of a source that repeats one exchange: its
// template (drawn by draw at the first flow) with sizes varied by rel and
// a fresh duration, start and source port.
func (t *Traffic) repeat(s *source, dst netip.Addr, rel float64, draw func(*source, netip.Addr) schemas.Flow) schemas.Flow {
	fresh := draw(s, dst)
	if s.n == 0 {
		s.tmpl = fresh
	}
	f := t.vary(s.tmpl, rel)
	f.StartNs, f.EndNs, f.SrcPort = fresh.StartNs, fresh.EndNs, fresh.SrcPort
	return f
}

// jittered returns period in seconds spread uniformly by ±jitter.
func (t *Traffic) jittered(period time.Duration, jitter float64) float64 {
	jitter = min(max(jitter, 0), 0.95)
	return period.Seconds() * (1 + jitter*(2*t.rng.Float64()-1))
}

// routine returns a routine's next flow and the gap to the one after it.
func (t *Traffic) routine(s *source) (Event, float64) {
	r := s.routine
	if r.Period <= 0 {
		return Event{}, -1
	}
	var f schemas.Flow
	gap := t.jittered(r.Period, r.Jitter)
	switch r.Kind {
	case RoutineNTP:
		f = t.ntp(s, r.Target)
	case RoutineUpdate:
		f = t.repeat(s, r.Target, 0.1, t.poll)
	case RoutineBackup:
		if s.left == 0 {
			s.left = r.Chunks
			if s.left <= 0 {
				s.left = 20
			}
		}
		f = t.upload(s, r.Target)
		s.left--
		if s.left > 0 {
			// The run's own gaps are part of its period.
			g := 3 + 7*t.rng.Float64()
			gap = g
		}
	default:
		fam, ok := sessionFamily[r.Kind]
		if !ok {
			return Event{}, -1
		}
		f, gap = t.mimic(s, fam, r.Target, r.Period, r.Jitter, 0)
		count := r.Count
		if count <= 0 {
			count = 5
		}
		if s.n+1 >= count {
			gap = -1
		}
	}
	return Event{Flow: f, Label: FamilyBenign, Kind: r.Kind}, gap
}

// attack returns the attack's next flow and the gap to the one after it.
func (t *Traffic) attack(s *source) (Event, float64) {
	a := s.attack
	var f schemas.Flow
	var gap float64
	jitter := a.Jitter
	if jitter == 0 {
		jitter = 0.2
	}
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
	case FamilySlowBeacon, FamilySlowScan, FamilySlowExfil, FamilyCredStuffing:
		f, gap = t.mimic(s, a.Family, a.Target, a.Period, jitter, a.Span)
	default:
		return Event{}, -1
	}
	return Event{Flow: f, Label: a.Family, Kind: a.Family}, gap
}

// mimic returns the next flow of a sequence family, or of the session that
// imitates it, from s to target, and the gap to the one after it. Attacks
// and sessions share it so that their flows come from one distribution.
// Period 0 picks the family's default; span applies to the scan only.
func (t *Traffic) mimic(s *source, family string, target netip.Addr, period time.Duration, jitter float64, span int) (schemas.Flow, float64) {
	switch family {
	case FamilySlowBeacon:
		return t.repeat(s, target, 0.1, t.poll), t.jittered(orDefault(period, time.Minute), jitter)
	case FamilySlowScan:
		if span <= 0 {
			span = 254
		}
		return t.failed(s, addrPlus(target, s.n%span)), t.jittered(orDefault(period, 30*time.Second), jitter)
	case FamilySlowExfil:
		return t.upload(s, target), t.jittered(orDefault(period, 2*time.Minute), jitter)
	default: // FamilyCredStuffing
		return t.login(s, target), t.jittered(orDefault(period, 45*time.Second), jitter)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// addrPlus returns the IPv4 address a advanced by n, wrapping at the end
// of the address space.
func addrPlus(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
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
// format file tailers such as rsyslog or syslog-ng ship. Times, conn_state
// and history are written as Writer writes them in Zeek's TSV.
func AppendZeekJSON(dst []byte, f *schemas.Flow, uid string) []byte {
	dst = append(dst, `{"ts":`...)
	dst = appendMicros(dst, f.StartNs)
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
	dst = appendMicros(dst, f.EndNs-f.StartNs)
	ip := func(dst []byte, key string, v uint64) []byte {
		dst = append(dst, `,"`+key+`":`...)
		return strconv.AppendUint(dst, v, 10)
	}
	dst = ip(dst, "orig_bytes", payload(f.BytesOut, f.PktsOut))
	dst = ip(dst, "resp_bytes", payload(f.BytesIn, f.PktsIn))
	state, history := zeekState(f)
	dst = append(dst, `,"conn_state":"`+state+`","history":"`+history+`","missed_bytes":0`...)
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
