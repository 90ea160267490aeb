package features

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
)

// SpecVersion is the version of the feature spec this build computes. Bump it
// whenever a feature is added, removed, reordered or computed differently;
// the hash changes anyway, the version tells people which change it was.
const SpecVersion = 2

// NumFeatures is the length of every feature vector.
const NumFeatures = 36

// Feature indices. The order is part of the spec: models index vectors by
// position. Only the slots another stage writes (IdxDeltaT, IdxDstRepeat,
// IdxDeltaDst) are exported; everything else is looked up by name through
// Spec.Index.
const (
	idxLogBytesOut = iota
	idxLogBytesIn
	idxLogPktsOut
	idxLogPktsIn
	idxLogDurationMs
	idxLogBppOut
	idxLogBppIn
	idxBytesInFrac
	idxPktsInFrac
	idxLogPktRate
	idxProtoTCP
	idxProtoUDP
	idxProtoICMP
	idxProtoOther
	idxSvcWeb
	idxSvcRemote
	idxSvcDNS
	idxSvcMail
	idxSvcSMB
	idxSvcRDP
	idxSvcDB
	idxSvcPrivOther
	idxSvcHigh
	idxSrcPortEphemeral
	idxTCPFin
	idxTCPSyn
	idxTCPRst
	idxTCPPsh
	idxTCPAck
	idxTCPUrg
	idxNoResponse
	idxSrcInternal
	idxDstInternal
	idxDeltaT
	idxDstRepeat
	idxDeltaDst
	numFeatures
)

// IdxDeltaT is the index of dt_prev, log1p of the seconds from the start of
// the same host's previous flow to the start of this one (DeltaTBetween).
// Ingest cannot know it (flows of one host are spread
// over ingest replicas and input partitions), so Vector leaves it at 0 and
// the scorer, which holds per-host state, writes DeltaT(gap) into this slot
// before stepping the model. The trainer does the same from its ordered data.
const IdxDeltaT = 33

// IdxDstRepeat and IdxDeltaDst are dst_repeat and dt_dst: whether the host
// started a flow to the same responder address recently (among the
// PeerSlots responders it contacted last), and log1p of the seconds since
// it did (0 when not). Like dt_prev they need per-host state, so ingest
// leaves them at 0 and the scorer and trainer fill them through PeerMemory.
// They are what makes "the same destination again and again" visible in a
// single step: a beacon's poll every minute, an exfiltration's uploads to
// one drop, a slow scan's never-seen targets, whatever else the host does
// in between.
const (
	IdxDstRepeat = 34
	IdxDeltaDst  = 35
)

// The exported constants are literals so that their documentation shows
// the numbers; these index expressions fail to compile if one drifts from
// the iota list above.
var (
	_ = [1]struct{}{}[NumFeatures-numFeatures]
	_ = [1]struct{}{}[IdxDeltaT-idxDeltaT]
	_ = [1]struct{}{}[IdxDstRepeat-idxDstRepeat]
	_ = [1]struct{}{}[IdxDeltaDst-idxDeltaDst]
)

// Destination-service classes by port. The Def strings in the spec are
// generated from these lists, and a test checks that serviceClass agrees
// with them for all 65536 ports, so the hash covers the real tables.
var (
	webPorts    = [...]uint16{80, 443, 8080, 8443}
	remotePorts = [...]uint16{22, 23}
	dnsPorts    = [...]uint16{53, 853}
	mailPorts   = [...]uint16{25, 110, 143, 465, 587, 993, 995}
	smbPorts    = [...]uint16{135, 137, 138, 139, 445}
	rdpPorts    = [...]uint16{3389}
	dbPorts     = [...]uint16{1433, 1521, 3306, 5432, 5984, 6379, 9042, 9200, 11211, 27017}
)

// Feature describes one slot of the feature vector.
type Feature struct {
	// Name is the column name in the features Arrow schema.
	Name string
	// Def says how the value is computed, precisely enough to reimplement
	// it. It is hashed, so changing a definition changes Spec.Hash.
	Def string
	// AttackerControlled is true when an external attacker can set the
	// value at will without changing what the attack does or whom it
	// targets: sizes, counts, timing and flag bits of the originator's own
	// traffic. Adversarial training perturbs exactly these. Responses,
	// protocol, targeted service and address classes are not.
	AttackerControlled bool
}

// portDefs is shared by all service-class definitions.
const portDefs = "; only for TCP, UDP, SCTP, DCCP and UDP-Lite (6, 17, 132, 33, 136), else 0"

var defaultFeatures = [numFeatures]Feature{
	idxLogBytesOut:      {"log_bytes_out", "log1p(bytes_out)", true},
	idxLogBytesIn:       {"log_bytes_in", "log1p(bytes_in)", false},
	idxLogPktsOut:       {"log_pkts_out", "log1p(pkts_out)", true},
	idxLogPktsIn:        {"log_pkts_in", "log1p(pkts_in)", false},
	idxLogDurationMs:    {"log_duration_ms", "log1p(max(0, end_ns-start_ns)/1e6)", true},
	idxLogBppOut:        {"log_bpp_out", "log1p(bytes_out/pkts_out), 0 if pkts_out=0", true},
	idxLogBppIn:         {"log_bpp_in", "log1p(bytes_in/pkts_in), 0 if pkts_in=0", false},
	idxBytesInFrac:      {"bytes_in_frac", "bytes_in/(bytes_in+bytes_out), 0 if both 0", true},
	idxPktsInFrac:       {"pkts_in_frac", "pkts_in/(pkts_in+pkts_out), 0 if both 0", true},
	idxLogPktRate:       {"log_pkt_rate", "log1p((pkts_out+pkts_in-1)/duration_s), 0 if fewer than 2 packets or duration 0", true},
	idxProtoTCP:         {"proto_tcp", "proto=6", false},
	idxProtoUDP:         {"proto_udp", "proto=17", false},
	idxProtoICMP:        {"proto_icmp", "proto in {1,58}", false},
	idxProtoOther:       {"proto_other", "proto not in {1,6,17,58}", false},
	idxSvcWeb:           {"dst_svc_web", "dst_port in " + portSet(webPorts[:]) + portDefs, false},
	idxSvcRemote:        {"dst_svc_remote", "dst_port in " + portSet(remotePorts[:]) + portDefs, false},
	idxSvcDNS:           {"dst_svc_dns", "dst_port in " + portSet(dnsPorts[:]) + portDefs, false},
	idxSvcMail:          {"dst_svc_mail", "dst_port in " + portSet(mailPorts[:]) + portDefs, false},
	idxSvcSMB:           {"dst_svc_smb_rpc", "dst_port in " + portSet(smbPorts[:]) + portDefs, false},
	idxSvcRDP:           {"dst_svc_rdp", "dst_port in " + portSet(rdpPorts[:]) + portDefs, false},
	idxSvcDB:            {"dst_svc_db", "dst_port in " + portSet(dbPorts[:]) + portDefs, false},
	idxSvcPrivOther:     {"dst_svc_priv_other", "dst_port<1024 and in no class above" + portDefs, false},
	idxSvcHigh:          {"dst_svc_high", "dst_port>=1024 and in no class above" + portDefs, false},
	idxSrcPortEphemeral: {"src_port_ephemeral", "src_port>=1024" + portDefs, true},
	idxTCPFin:           {"tcp_fin", "proto=6 and tcp_flags&0x01", true},
	idxTCPSyn:           {"tcp_syn", "proto=6 and tcp_flags&0x02", true},
	idxTCPRst:           {"tcp_rst", "proto=6 and tcp_flags&0x04", true},
	idxTCPPsh:           {"tcp_psh", "proto=6 and tcp_flags&0x08", true},
	idxTCPAck:           {"tcp_ack", "proto=6 and tcp_flags&0x10", true},
	idxTCPUrg:           {"tcp_urg", "proto=6 and tcp_flags&0x20", true},
	idxNoResponse:       {"no_response", "pkts_in=0 and bytes_in=0", false},
	idxSrcInternal:      {"src_internal", internalDef("src_addr"), false},
	idxDstInternal:      {"dst_internal", internalDef("dst_addr"), false},
	idxDeltaT:           {"dt_prev", "log1p(max(0, start_ns - start_ns of the host's previous flow in arrival order)/1e9), 0 for its first flow; 0 from ingest, set by the scorer", true},
	idxDstRepeat:        {"dst_repeat", "1 if the host started an earlier flow (in arrival order) to the same responder address (unmapped, zone dropped) and that address is still among the 16 responders whose last flow from the host started latest, else 0; 0 from ingest, set by the scorer", false},
	idxDeltaDst:         {"dt_dst", "log1p(max(0, start_ns - start_ns of the host's previous flow to the same responder address)/1e9) when dst_repeat is 1, else 0; 0 from ingest, set by the scorer", true},
}

func internalDef(field string) string {
	return "unmapped " + field + " in 10/8, 172.16/12, 192.168/16, fc00::/7, 127/8, ::1, 169.254/16, fe80::/10"
}

func portSet(ports []uint16) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	b.WriteByte('}')
	return b.String()
}

// Spec is a versioned feature spec: the names, order and definitions of the
// features. A Spec is immutable; its methods return copies.
type Spec struct {
	version  int
	features []Feature // never written after package initialisation
	hash     string
}

// defaultSpec is computed once because hashing on every call would be
// wasted work; the value never changes afterwards.
var defaultSpec = sync.OnceValue(func() Spec {
	s := Spec{version: SpecVersion, features: defaultFeatures[:]}
	s.hash = s.computeHash()
	return s
})

// Default returns the feature spec this build computes.
func Default() Spec { return defaultSpec() }

// Version returns the spec's version number.
func (s Spec) Version() int { return s.version }

// Len returns the number of features, NumFeatures for Default.
func (s Spec) Len() int { return len(s.features) }

// Feature returns feature j.
func (s Spec) Feature(j int) Feature { return s.features[j] }

// Names returns the feature names in vector order.
func (s Spec) Names() []string {
	names := make([]string, len(s.features))
	for j, f := range s.features {
		names[j] = f.Name
	}
	return names
}

// Index returns the position of the named feature.
func (s Spec) Index(name string) (int, bool) {
	for j, f := range s.features {
		if f.Name == name {
			return j, true
		}
	}
	return -1, false
}

// AttackerControlled returns the indices of the features an attacker
// controls (see Feature.AttackerControlled), in ascending order.
func (s Spec) AttackerControlled() []int {
	var idx []int
	for j, f := range s.features {
		if f.AttackerControlled {
			idx = append(idx, j)
		}
	}
	return idx
}

// Hash returns 16 hex digits identifying the spec: a SHA-256 prefix over the
// version, names and definitions. Models store the hash they were trained
// with, and features batches carry it, so a mismatch is caught, not scored.
func (s Spec) Hash() string { return s.hash }

func (s Spec) computeHash() string {
	h := sha256.New()
	h.Write([]byte("metaids features v" + strconv.Itoa(s.version) + "\n"))
	for _, f := range s.features {
		h.Write([]byte(f.Name + "=" + f.Def + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
