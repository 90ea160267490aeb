package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Causes wrapped by field-level RecordErrors. Range problems wrap ErrRange
// and syntax problems ErrSyntax, so callers can tell them apart.
var (
	errNotNumber = fmt.Errorf("%w: not a number", ErrSyntax)
	errNegative  = fmt.Errorf("%w: negative", ErrRange)
	errOverflow  = fmt.Errorf("%w: too large", ErrRange)
	errFraction  = fmt.Errorf("%w: not an integer", ErrRange)
	errEmptyAddr = errors.New("empty address")
	errNotTime   = fmt.Errorf("%w: not a timestamp", ErrSyntax)
	errBadProto  = fmt.Errorf("%w: unknown protocol", ErrSyntax)
	errNotString = fmt.Errorf("%w: want a string", ErrSyntax)
)

// unsafeString views b as a string without copying. Use it only for calls
// that do not keep the string: the record buffer belongs to the caller and may
// be reused once Decode returns.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseUint parses plain decimal digits.
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, errNotNumber
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errNotNumber
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, errOverflow
		}
		n = n*10 + d
	}
	return n, nil
}

// parseCount parses a non-negative integer. Plain digits take the fast path;
// "40.0" and "4e1" are accepted when integral because CSV exporters and some
// JSON encoders write every number as a float.
func parseCount(b []byte) (uint64, error) {
	n, err := parseUint(b)
	if err != errNotNumber {
		return n, err
	}
	if len(b) > 0 && b[0] == '-' {
		if _, err := parseUint(b[1:]); err == nil {
			return 0, errNegative
		}
	}
	f, ferr := strconv.ParseFloat(unsafeString(b), 64)
	switch {
	case ferr != nil && !errors.Is(ferr, strconv.ErrRange), math.IsNaN(f), len(b) > 0 && (b[0] == 'I' || b[0] == 'i' || b[0] == '+' && len(b) > 1 && (b[1] == 'I' || b[1] == 'i')):
		return 0, errNotNumber
	case f < 0:
		return 0, errNegative
	case f >= 1<<64 || ferr != nil:
		return 0, errOverflow
	case f != math.Trunc(f):
		return 0, errFraction
	}
	return uint64(f), nil
}

// parseInt64 is parseCount limited to int64, for times.
func parseInt64(b []byte) (int64, error) {
	n, err := parseCount(b)
	if err == nil && n > math.MaxInt64 {
		err = errOverflow
	}
	return int64(n), err
}

func parsePort(b []byte) (uint16, error) {
	n, err := parseCount(b)
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint16 {
		return 0, errOverflow
	}
	return uint16(n), nil
}

// parseFlags parses a TCP flags counter. IPFIX's tcpControlBits is 16 bits
// wide (NS and the reserved bits above the classic eight); Flow keeps the
// classic eight.
func parseFlags(b []byte) (uint8, error) {
	n, err := parseCount(b)
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint16 {
		return 0, errOverflow
	}
	return uint8(n), nil
}

// parseAddr parses an IPv4 or IPv6 address. IPv4-mapped IPv6 addresses are
// unmapped and zones dropped, so the same host always yields the same key
// downstream whatever the shipper's rendering.
func parseAddr(b []byte) (netip.Addr, error) {
	if len(b) == 0 {
		return netip.Addr{}, errEmptyAddr
	}
	var (
		a   netip.Addr
		err error
	)
	if len(b) > 64 {
		err = errNotNumber
	} else if bytes.IndexByte(b, '%') >= 0 {
		// ParseAddr keeps a zone's text, so it must not alias the record.
		a, err = netip.ParseAddr(string(b))
	} else {
		a, err = netip.ParseAddr(unsafeString(b))
	}
	if err != nil {
		// netip's error would hold the unsafe view; quote a copy instead.
		return netip.Addr{}, fmt.Errorf("%w: not an IP address: %q", ErrSyntax, truncate(b, 64))
	}
	return a.Unmap().WithZone(""), nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// protoUnknown is what Flow.Proto holds when the shipper itself did not know
// the protocol (goflow2 renders numbers outside its table as "", Zeek says
// "unknown_transport"). IANA reserves 255, so it cannot be mistaken for a
// real protocol, and the flow is still scored.
const protoUnknown = 255

// protoNames maps lower-cased protocol keywords to IANA numbers: the IANA
// registry's keywords (goflow2 and Suricata print these), the /etc/protocols
// names (pmacct, nfdump) and Zeek's names.
var protoNames = map[string]uint8{
	"hopopt": 0, "ip": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipv4": 4, "ipencap": 4,
	"st": 5, "tcp": 6, "cbt": 7, "egp": 8, "igp": 9, "bbn-rcc-mon": 10,
	"nvp-ii": 11, "pup": 12, "argus": 13, "emcon": 14, "xnet": 15, "chaos": 16,
	"udp": 17, "mux": 18, "dcn-meas": 19, "hmp": 20, "prm": 21, "xns-idp": 22,
	"trunk-1": 23, "trunk-2": 24, "leaf-1": 25, "leaf-2": 26, "rdp": 27,
	"irtp": 28, "iso-tp4": 29, "netblt": 30, "mfe-nsp": 31, "merit-inp": 32,
	"dccp": 33, "3pc": 34, "idpr": 35, "xtp": 36, "ddp": 37, "idpr-cmtp": 38,
	"tp++": 39, "il": 40, "ipv6": 41, "sdrp": 42, "ipv6-route": 43,
	"ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "dsr": 48, "bna": 49,
	"esp": 50, "ipv6-crypt": 50, "ah": 51, "ipv6-auth": 51, "i-nlsp": 52,
	"swipe": 53, "narp": 54, "min-ipv4": 55, "mobile": 55, "tlsp": 56,
	"skip": 57, "ipv6-icmp": 58, "icmpv6": 58, "icmp6": 58, "ipv6-nonxt": 59,
	"ipv6-opts": 60, "cftp": 62, "sat-expak": 64, "kryptolan": 65, "rvd": 66,
	"ippc": 67, "sat-mon": 69, "visa": 70, "ipcv": 71, "cpnx": 72, "cphb": 73,
	"wsn": 74, "pvp": 75, "br-sat-mon": 76, "sun-nd": 77, "wb-mon": 78,
	"wb-expak": 79, "iso-ip": 80, "vmtp": 81, "secure-vmtp": 82, "vines": 83,
	"ttp": 84, "iptm": 84, "nsfnet-igp": 85, "dgp": 86, "tcf": 87, "eigrp": 88,
	"ospfigp": 89, "ospf": 89, "sprite-rpc": 90, "larp": 91, "mtp": 92,
	"ax.25": 93, "ipip": 94, "micp": 95, "scc-sp": 96, "etherip": 97,
	"encap": 98, "gmtp": 100, "ifmp": 101, "pnni": 102, "pim": 103, "aris": 104,
	"scps": 105, "qnx": 106, "a/n": 107, "ipcomp": 108, "snp": 109,
	"compaq-peer": 110, "ipx-in-ip": 111, "vrrp": 112, "pgm": 113, "l2tp": 115,
	"ddx": 116, "iatp": 117, "stp": 118, "srp": 119, "uti": 120, "smp": 121,
	"sm": 122, "ptp": 123, "isis": 124, "isis-over-ipv4": 124, "fire": 125,
	"crtp": 126, "crudp": 127, "sscopmce": 128, "iplt": 129, "sps": 130,
	"pipe": 131, "sctp": 132, "fc": 133, "rsvp-e2e-ignore": 134,
	"mobility-header": 135, "ipv6-mh": 135, "udplite": 136, "mpls-in-ip": 137,
	"manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142,
	"ethernet": 143, "aggfrag": 144, "nsh": 145,
	"": protoUnknown, "unknown": protoUnknown, "unknown_transport": protoUnknown,
}

// parseProto reads a protocol as a number ("6") or a keyword ("TCP", "tcp",
// "IPv6-ICMP") in any case.
func parseProto(b []byte) (uint8, error) {
	// The three protocols that make up nearly all flows skip the map.
	switch string(b) {
	case "TCP", "tcp", "6":
		return 6, nil
	case "UDP", "udp", "17":
		return 17, nil
	case "ICMP", "icmp", "1":
		return 1, nil
	}
	if n, err := parseUint(b); err != errNotNumber {
		if err != nil || n > 255 {
			return 0, fmt.Errorf("%w: protocol number %s", ErrRange, truncate(b, 20))
		}
		return uint8(n), nil
	}
	var buf [24]byte
	if len(b) > len(buf) {
		return 0, errBadProto
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	p, ok := protoNames[string(buf[:len(b)])]
	if !ok {
		return 0, fmt.Errorf("%w %q", errBadProto, truncate(b, 24))
	}
	return p, nil
}

// TCP flag bits as in the TCP header.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagECE = 0x40
	flagCWR = 0x80
)

// parseEpoch parses a decimal count of units since the epoch into ns, for
// example seconds ("1795335325.918000", unitNs 1e9) or milliseconds (unitNs
// 1e6). It reads the digits itself: float64 has too few digits for
// microsecond timestamps.
func parseEpoch(b []byte, unitNs int64) (int64, error) {
	intPart, frac := b, []byte(nil)
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		intPart, frac = b[:i], b[i+1:]
	}
	n, err := parseUint(intPart)
	if err == errNotNumber || len(intPart) == 0 || !allDigits(frac) {
		// Exponent form ("1.6e9"), negative or garbage: rare, so float
		// precision will do for what parses.
		f, ferr := strconv.ParseFloat(unsafeString(b), 64)
		switch {
		case ferr != nil || math.IsNaN(f) || math.IsInf(f, 0):
			return 0, errNotTime
		case f < 0:
			return 0, errNegative
		case f*float64(unitNs) >= math.MaxInt64:
			return 0, errOverflow
		}
		return int64(f * float64(unitNs)), nil
	}
	if err != nil {
		return 0, err
	}
	if n >= uint64(math.MaxInt64/unitNs) {
		return 0, errOverflow
	}
	ns := int64(n) * unitNs
	// Fractional digits beyond ns resolution are dropped.
	for i, d := 0, unitNs/10; i < len(frac) && d > 0; i, d = i+1, d/10 {
		ns += int64(frac[i]-'0') * d
	}
	return ns, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseISOTime parses "YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][zone]" where zone
// is Z, ±hh, ±hhmm or ±hh:mm (Suricata writes "+0000"). A time without zone is
// read in loc.
func parseISOTime(b []byte, loc *time.Location) (int64, error) {
	if len(b) < 16 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != ' ') || b[13] != ':' {
		return 0, errNotTime
	}
	year, ok1 := atoiN(b[0:4])
	month, ok2 := atoiN(b[5:7])
	day, ok3 := atoiN(b[8:10])
	hour, ok4 := atoiN(b[11:13])
	minute, ok5 := atoiN(b[14:16])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return 0, errNotTime
	}
	rest := b[16:]
	sec, nsec := 0, 0
	if len(rest) >= 3 && rest[0] == ':' {
		var ok bool
		if sec, ok = atoiN(rest[1:3]); !ok {
			return 0, errNotTime
		}
		rest = rest[3:]
		if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
			i := 1
			for scale := 100_000_000; i < len(rest) && '0' <= rest[i] && rest[i] <= '9'; i++ {
				nsec += int(rest[i]-'0') * scale
				scale /= 10
			}
			if i == 1 {
				return 0, errNotTime
			}
			rest = rest[i:]
		}
	}
	zone, err := parseZone(rest, loc)
	if err != nil {
		return 0, err
	}
	return dateNs(year, month, day, hour, minute, sec, nsec, zone)
}

// dateNs builds a time after checking each part's range: time.Date would
// silently normalise 2017-02-31 to March.
func dateNs(year, month, day, hour, minute, sec, nsec int, loc *time.Location) (int64, error) {
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 || year < 1900 || year > 2200 {
		return 0, errNotTime
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if t.Day() != day && sec != 60 {
		return 0, errNotTime
	}
	return t.UnixNano(), nil
}

func parseZone(b []byte, loc *time.Location) (*time.Location, error) {
	switch {
	case len(b) == 0:
		return loc, nil
	case len(b) == 1 && (b[0] == 'Z' || b[0] == 'z'):
		return time.UTC, nil
	case b[0] != '+' && b[0] != '-':
		return nil, errNotTime
	}
	var hh, mm int
	var ok bool
	switch len(b) {
	case 3: // +hh
		hh, ok = atoiN(b[1:3])
	case 5: // +hhmm
		hh, ok = atoiN(b[1:3])
		if ok {
			mm, ok = atoiN(b[3:5])
		}
	case 6: // +hh:mm
		hh, ok = atoiN(b[1:3])
		if ok && b[3] == ':' {
			mm, ok = atoiN(b[4:6])
		} else {
			ok = false
		}
	}
	if !ok || hh > 23 || mm > 59 {
		return nil, errNotTime
	}
	off := hh*3600 + mm*60
	if b[0] == '-' {
		off = -off
	}
	if off == 0 {
		return time.UTC, nil
	}
	return time.FixedZone("", off), nil
}

// atoiN parses a short run of digits.
func atoiN(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// maxService bounds Flow.Service: service names are short protocol names,
// and a longer value is a shipper bug or an attack on the feature builder.
const maxService = 64

// internService returns the service name lower-cased, as a constant string
// for the common names so that decoding them does not allocate. A name that
// is too long or not UTF-8 is dropped: Service travels on as Arrow and Avro
// strings, which must be valid UTF-8.
func internService(b []byte) string {
	var buf [32]byte
	if len(b) > len(buf) {
		if len(b) > maxService || !utf8.Valid(b) {
			return ""
		}
		return string(bytes.ToLower(b))
	}
	lower := buf[:len(b)]
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if !utf8.Valid(lower) {
		return ""
	}
	switch string(lower) {
	case "", "-", "(empty)", "failed", "unknown":
		return ""
	case "dns":
		return "dns"
	case "http":
		return "http"
	case "ssl":
		return "ssl"
	case "tls":
		return "tls"
	case "ssh":
		return "ssh"
	case "smtp":
		return "smtp"
	case "ftp":
		return "ftp"
	case "ntp":
		return "ntp"
	case "dhcp":
		return "dhcp"
	case "smb":
		return "smb"
	case "krb":
		return "krb"
	case "quic":
		return "quic"
	case "rdp":
		return "rdp"
	case "snmp":
		return "snmp"
	case "sip":
		return "sip"
	case "ldap":
		return "ldap"
	}
	return string(lower)
}
