package features

import (
	"math"
	"net/netip"
	"slices"

	"github.com/metaids/metaids/schemas"
)

// IANA protocol numbers the features distinguish.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)

// Vector appends f's raw feature vector (NumFeatures values in Default's
// order) to dst and returns the extended slice. Values are not normalised:
// the model carries its own normalisation statistics, so retraining never
// needs a new ingest. dt_prev, dst_repeat and dt_dst (IdxDeltaT,
// IdxDstRepeat, IdxDeltaDst) are left at 0 for the scorer.
//
// Every value is finite for every input, including hostile counters and
// timestamps, and Vector allocates nothing when dst has room.
//
// Flow.Service is not used: only some shippers fill it, and the same
// traffic must give the same vector whichever shipper saw it. The service
// classes come from the destination port alone.
//
// Unidirectional shippers report zero In counters. The In features are then
// constant and carry no information, but every Out, duration, rate, flag,
// port and address feature still does: a scan is still many short,
// SYN-only, single-packet flows to one service class.
func Vector(dst []float32, f *schemas.Flow) []float32 {
	dst = slices.Grow(dst, NumFeatures)
	n := len(dst)
	dst = dst[:n+NumFeatures]
	v := (*[NumFeatures]float32)(dst[n:])
	fill(v, f)
	return dst
}

// fill writes every slot of v, so callers may reuse v without clearing it.
func fill(v *[NumFeatures]float32, f *schemas.Flow) {
	bo, bi := float64(f.BytesOut), float64(f.BytesIn)
	po, pi := float64(f.PktsOut), float64(f.PktsIn)

	// Subtract in uint64: both timestamps come from outside and their
	// int64 difference could overflow.
	var durNs float64
	if f.EndNs > f.StartNs {
		durNs = float64(uint64(f.EndNs) - uint64(f.StartNs))
	}

	v[idxLogBytesOut] = log1p(bo)
	v[idxLogBytesIn] = log1p(bi)
	v[idxLogPktsOut] = log1p(po)
	v[idxLogPktsIn] = log1p(pi)
	v[idxLogDurationMs] = log1p(durNs / 1e6)
	v[idxLogBppOut] = logRatio(bo, po)
	v[idxLogBppIn] = logRatio(bi, pi)
	v[idxBytesInFrac] = frac(bi, bo)
	v[idxPktsInFrac] = frac(pi, po)
	// N packets span N-1 gaps; a single packet or a zero duration has no
	// rate, and flooring the duration instead would invent one.
	v[idxLogPktRate] = 0
	if pkts := po + pi; pkts >= 2 && durNs > 0 {
		v[idxLogPktRate] = log1p((pkts - 1) / (durNs / 1e9))
	}

	v[idxProtoTCP] = b2f(f.Proto == protoTCP)
	v[idxProtoUDP] = b2f(f.Proto == protoUDP)
	v[idxProtoICMP] = b2f(f.Proto == protoICMP || f.Proto == protoICMPv6)
	v[idxProtoOther] = b2f(f.Proto != protoTCP && f.Proto != protoUDP && f.Proto != protoICMP && f.Proto != protoICMPv6)

	for j := idxSvcWeb; j <= idxSrcPortEphemeral; j++ {
		v[j] = 0
	}
	// Ports mean nothing for other protocols; some shippers put the ICMP
	// type and code in them, which must not read as a service.
	if hasPorts(f.Proto) {
		v[serviceClass(f.DstPort)] = 1
		v[idxSrcPortEphemeral] = b2f(f.SrcPort >= 1024)
	}

	var flags uint8
	if f.Proto == protoTCP {
		flags = f.TCPFlags
	}
	v[idxTCPFin] = b2f(flags&0x01 != 0)
	v[idxTCPSyn] = b2f(flags&0x02 != 0)
	v[idxTCPRst] = b2f(flags&0x04 != 0)
	v[idxTCPPsh] = b2f(flags&0x08 != 0)
	v[idxTCPAck] = b2f(flags&0x10 != 0)
	v[idxTCPUrg] = b2f(flags&0x20 != 0)

	v[idxNoResponse] = b2f(f.PktsIn == 0 && f.BytesIn == 0)
	v[idxSrcInternal] = b2f(internal(f.SrcAddr))
	v[idxDstInternal] = b2f(internal(f.DstAddr))
	v[idxDeltaT] = 0
	v[idxDstRepeat] = 0
	v[idxDeltaDst] = 0
}

// DeltaTBetween returns the dt_prev value of a flow starting at startNs
// whose host's previous flow (in the order the scorer receives them) started
// at prevStartNs. Start to start, not end to end: the gap between connection
// attempts is what makes beacons periodic and scans dense, whatever the
// flows' durations. Scorer and trainer must both use this; for a host's
// first flow both use 0.
func DeltaTBetween(prevStartNs, startNs int64) float32 {
	if startNs <= prevStartNs {
		return 0 // flows are exported at their end, so starts can run backwards
	}
	// Subtract in uint64: the int64 difference of hostile times can overflow.
	return float32(math.Log1p(float64(uint64(startNs)-uint64(prevStartNs)) / 1e9))
}

// DeltaT returns the dt_prev value for a gap of gapNs nanoseconds (see
// DeltaTBetween for which gap): log1p of the gap in seconds, with negative
// gaps counting as 0.
func DeltaT(gapNs int64) float32 {
	if gapNs <= 0 {
		return 0
	}
	return float32(math.Log1p(float64(gapNs) / 1e9))
}

func hasPorts(proto uint8) bool {
	switch proto {
	case protoTCP, protoUDP, protoSCTP, protoDCCP, protoUDPLite:
		return true
	}
	return false
}

// serviceClass returns the feature index of the destination port's class.
// It must agree with the port lists in spec.go; TestServiceClassMatchesSpec
// checks every port.
func serviceClass(port uint16) int {
	switch port {
	case 80, 443, 8080, 8443:
		return idxSvcWeb
	case 22, 23:
		return idxSvcRemote
	case 53, 853:
		return idxSvcDNS
	case 25, 110, 143, 465, 587, 993, 995:
		return idxSvcMail
	case 135, 137, 138, 139, 445:
		return idxSvcSMB
	case 3389:
		return idxSvcRDP
	case 1433, 1521, 3306, 5432, 5984, 6379, 9042, 9200, 11211, 27017:
		return idxSvcDB
	}
	if port < 1024 {
		return idxSvcPrivOther
	}
	return idxSvcHigh
}

// internal reports whether a is a private, loopback or link-local address.
// IPv4-mapped IPv6 addresses count as their IPv4 form, because shippers
// differ in which form they report.
func internal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()
}

func log1p(x float64) float32 { return float32(math.Log1p(x)) }

// logRatio is log1p(num/den), 0 when den is 0: a flow with bytes but no
// packets is a shipper bug, not a huge packet.
func logRatio(num, den float64) float32 {
	if den == 0 {
		return 0
	}
	return float32(math.Log1p(num / den))
}

// frac is a/(a+b), 0 when both are 0. Added in float64: the uint64 sum of
// two hostile counters could wrap.
func frac(a, b float64) float32 {
	if a+b == 0 {
		return 0
	}
	return float32(a / (a + b))
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}
