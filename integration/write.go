package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/metaids/metaids/schemas"
)

// Output formats of Writer, named as ingest names the formats that read
// them. Only zeek and cic carry labels: the shippers' JSON formats have no
// field for one.
const (
	// OutZeek is Zeek conn.log TSV with Stratosphere's label columns:
	// label is Benign or Malicious, detailed-label the attack family, or
	// the routine of a benign routine's flow (ntp_sync …), or unset.
	OutZeek = "zeek"
	// OutCIC is CICFlowMeter CSV with a Label column: BENIGN or the
	// attack family.
	OutCIC = "cic"
	// OutGoflow2 is goflow2's JSON, one line per flow (the originator
	// direction only; see AppendGoflow2JSON).
	OutGoflow2 = "goflow2"
	// OutNProbe is nProbe's JSON, one line per flow.
	OutNProbe = "nprobe"
	// OutZeekJSON is Zeek conn.log as JSON lines.
	OutZeekJSON = "zeek-json"
)

// OutFormats lists the output formats.
var OutFormats = []string{OutZeek, OutCIC, OutGoflow2, OutNProbe, OutZeekJSON}

// ErrUnknownOutFormat means a format is none of OutFormats.
var ErrUnknownOutFormat = errors.New("unknown output format")

// Ext returns the usual file name ending of an output format.
func Ext(format string) string {
	switch format {
	case OutZeek:
		return ".conn.log"
	case OutCIC:
		return ".csv"
	}
	return ".json"
}

// Writer writes events as the lines of a flow-log file in one of
// OutFormats. Times are written to the microsecond, the resolution of
// Zeek's and CICFlowMeter's files, so a flow whose times are whole
// microseconds (as Scenario.Events makes them) reads back unchanged through
// the ingest decoders, bar the shippers' own limits: goflow2 reports the
// originator direction only, and CICFlowMeter's byte columns hold the
// flow's byte counts as they are. Zeek's history column is made of the
// flags the flow carries (S, A, D, F, R) so that they too read back
// unchanged; it is not a packet-by-packet history. Writer is not safe for
// concurrent use.
type Writer struct {
	w      *bufio.Writer
	format string
	buf    []byte
	n      int64
	last   int64 // the latest flow end, for Zeek's #close
	header bool
}

// NewWriter returns a Writer of format to w.
func NewWriter(w io.Writer, format string) (*Writer, error) {
	switch format {
	case OutZeek, OutCIC, OutGoflow2, OutNProbe, OutZeekJSON:
	default:
		return nil, fmt.Errorf("%w %q: want one of %v", ErrUnknownOutFormat, format, OutFormats)
	}
	return &Writer{w: bufio.NewWriterSize(w, 1<<16), format: format}, nil
}

// zeekFields are the columns Writer writes: conn.log's standard columns,
// then Stratosphere's two label columns.
const zeekFields = "ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tlabel\tdetailed-label"

const zeekTypes = "time\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tstring\tstring"

const cicHeader = "Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Total Fwd Packets,Total Backward Packets,Total Length of Fwd Packets,Total Length of Bwd Packets,FIN Flag Count,SYN Flag Count,RST Flag Count,PSH Flag Count,ACK Flag Count,URG Flag Count,CWR Flag Count,ECE Flag Count,Label"

// writeHeader writes the format's header; Zeek's #open needs the first
// flow's time.
func (w *Writer) writeHeader(first int64) error {
	w.header = true
	var err error
	switch w.format {
	case OutZeek:
		_, err = fmt.Fprintf(w.w, "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t%s\n#fields\t%s\n#types\t%s\n",
			time.Unix(0, first).UTC().Format("2006-01-02-15-04-05"), zeekFields, zeekTypes)
	case OutCIC:
		_, err = fmt.Fprintln(w.w, cicHeader)
	}
	return err
}

// Write writes one event.
func (w *Writer) Write(ev *Event) error {
	if !w.header {
		if err := w.writeHeader(ev.Flow.StartNs); err != nil {
			return err
		}
	}
	w.n++
	w.last = max(w.last, ev.Flow.EndNs)
	b := w.buf[:0]
	f := &ev.Flow
	switch w.format {
	case OutZeek:
		b = appendZeekTSV(b, ev, "C"+strconv.FormatInt(1e12+w.n, 36))
	case OutCIC:
		b = appendCICCSV(b, ev)
	case OutGoflow2:
		b = AppendGoflow2JSON(b, f)
	case OutNProbe:
		b = AppendNProbeJSON(b, f)
	case OutZeekJSON:
		b = AppendZeekJSON(b, f, "C"+strconv.FormatInt(1e12+w.n, 36))
	}
	b = append(b, '\n')
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

// Close ends the file (Zeek's #close line) and flushes; it does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.format == OutZeek && w.header {
		if _, err := fmt.Fprintf(w.w, "#close\t%s\n", time.Unix(0, w.last).UTC().Format("2006-01-02-15-04-05")); err != nil {
			return err
		}
	}
	return w.w.Flush()
}

// appendMicros appends ns as seconds with six decimals, truncated, without
// the rounding of a float.
func appendMicros(dst []byte, ns int64) []byte {
	if ns < 0 {
		dst = append(dst, '-')
		ns = -ns
	}
	dst = strconv.AppendInt(dst, ns/1e9, 10)
	dst = append(dst, '.')
	us := (ns % 1e9) / 1e3
	for d := int64(100000); d > 0; d /= 10 {
		dst = append(dst, byte('0'+us/d%10))
	}
	return dst
}

func protoLower(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// zeekState returns a conn_state and a history for f whose flags, as
// ingest derives them (the union of the history's and the state's), are
// f's own.
func zeekState(f *schemas.Flow) (state, history string) {
	if f.Proto != 6 {
		if f.PktsIn > 0 {
			return "SF", "Dd"
		}
		return "S0", "D"
	}
	fl := f.TCPFlags
	const fin, syn, rst, psh, ack = 0x01, 0x02, 0x04, 0x08, 0x10
	var h []byte
	for _, c := range [...]struct {
		bit    uint8
		letter byte
	}{{syn, 'S'}, {ack, 'A'}, {psh, 'D'}, {fin, 'F'}, {rst, 'R'}} {
		if fl&c.bit != 0 {
			h = append(h, c.letter)
		}
	}
	switch {
	case fl&(syn|ack|fin) == syn|ack|fin && fl&rst == 0:
		state = "SF"
	case fl&(syn|rst) == syn|rst:
		state = "REJ"
	case fl&syn != 0 && f.PktsIn == 0:
		state = "S0"
	default:
		state = "OTH"
	}
	if len(h) == 0 {
		return state, "-"
	}
	return state, string(h)
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func boolTF(b bool) byte {
	if b {
		return 'T'
	}
	return 'F'
}

// zeekLabels returns Stratosphere's label and detailed-label of ev.
func zeekLabels(ev *Event) (label, detail string) {
	if ev.Label != FamilyBenign {
		return "Malicious", ev.Label
	}
	for _, r := range Routines {
		if ev.Kind == r {
			return "Benign", r
		}
	}
	return "Benign", "-"
}

func appendZeekTSV(dst []byte, ev *Event, uid string) []byte {
	f := &ev.Flow
	tab := func(dst []byte) []byte { return append(dst, '\t') }
	num := func(dst []byte, v uint64) []byte { return strconv.AppendUint(tab(dst), v, 10) }
	dst = appendMicros(dst, f.StartNs)
	dst = append(tab(dst), uid...)
	dst = f.SrcAddr.AppendTo(tab(dst))
	dst = num(dst, uint64(f.SrcPort))
	dst = f.DstAddr.AppendTo(tab(dst))
	dst = num(dst, uint64(f.DstPort))
	dst = append(tab(dst), protoLower(f.Proto)...)
	dst = append(tab(dst), '-')
	dst = appendMicros(tab(dst), f.EndNs-f.StartNs)
	dst = num(dst, payload(f.BytesOut, f.PktsOut))
	dst = num(dst, payload(f.BytesIn, f.PktsIn))
	state, history := zeekState(f)
	dst = append(tab(dst), state...)
	dst = append(tab(dst), boolTF(internalAddr(f.SrcAddr)))
	dst = append(tab(dst), boolTF(internalAddr(f.DstAddr)))
	dst = num(dst, 0)
	dst = append(tab(dst), history...)
	dst = num(dst, f.PktsOut)
	dst = num(dst, f.BytesOut)
	dst = num(dst, f.PktsIn)
	dst = num(dst, f.BytesIn)
	dst = append(tab(dst), '-')
	label, detail := zeekLabels(ev)
	dst = append(tab(dst), label...)
	return append(tab(dst), detail...)
}

func appendCICCSV(dst []byte, ev *Event) []byte {
	f := &ev.Flow
	comma := func(dst []byte) []byte { return append(dst, ',') }
	num := func(dst []byte, v uint64) []byte { return strconv.AppendUint(comma(dst), v, 10) }
	// Flow ID, as CICFlowMeter writes it.
	dst = f.SrcAddr.AppendTo(dst)
	dst = append(dst, '-')
	dst = f.DstAddr.AppendTo(dst)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, uint64(f.SrcPort), 10)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, uint64(f.DstPort), 10)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, uint64(f.Proto), 10)
	dst = f.SrcAddr.AppendTo(comma(dst))
	dst = num(dst, uint64(f.SrcPort))
	dst = f.DstAddr.AppendTo(comma(dst))
	dst = num(dst, uint64(f.DstPort))
	dst = num(dst, uint64(f.Proto))
	t := time.Unix(0, f.StartNs).UTC()
	dst = t.AppendFormat(comma(dst), "2006-01-02 15:04:05.000000")
	dst = num(dst, uint64(max(f.EndNs-f.StartNs, 0)/1e3))
	dst = num(dst, f.PktsOut)
	dst = num(dst, f.PktsIn)
	dst = num(dst, f.BytesOut)
	dst = num(dst, f.BytesIn)
	var fl uint8
	if f.Proto == 6 {
		fl = f.TCPFlags
	}
	// The header's order: FIN SYN RST PSH ACK URG CWR ECE.
	for _, bit := range [...]uint8{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x80, 0x40} {
		dst = num(dst, uint64(b2u(fl&bit != 0)))
	}
	label := "BENIGN"
	if ev.Label != FamilyBenign {
		label = ev.Label
	}
	return append(comma(dst), label...)
}

// internalAddr reports whether a is private, loopback or link-local, as
// Zeek's local_orig and local_resp would with the usual Site::local_nets.
func internalAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()
}
