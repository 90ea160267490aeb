package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metaids/metaids/features"
)

// The real-shipper test: Debian's softflowd turns a packet capture into
// IPFIX, Debian's pmacct nfacctd collects it and its Kafka plugin
// (librdkafka) writes JSON to the embedded broker, and the stage turns it
// into feature rows. Nothing on the input side is ours but the capture.

// pcapPacket is one packet of the capture the test writes.
type pcapPacket struct {
	at       time.Time
	src, dst string
	sport    uint16
	dport    uint16
	proto    uint8 // 6 or 17
	flags    uint8 // TCP flags
	payload  int
}

// writePcap writes packets as a classic pcap file (microsecond
// timestamps, Ethernet link type) of IPv4 TCP and UDP frames. The format
// is small enough to write by hand: a 24-byte file header, then a 16-byte
// record header before each frame.
func writePcap(path string, pkts []pcapPacket) error {
	var buf bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4) // magic, µs timestamps
	binary.LittleEndian.PutUint16(hdr[4:], 2)          // version 2.4
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535) // snaplen
	binary.LittleEndian.PutUint32(hdr[20:], 1)     // LINKTYPE_ETHERNET
	buf.Write(hdr)
	for _, p := range pkts {
		f, err := frame(p)
		if err != nil {
			return err
		}
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(p.at.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(p.at.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		buf.Write(rec)
		buf.Write(f)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// frame builds an Ethernet/IPv4/TCP-or-UDP frame with a valid IP checksum.
func frame(p pcapPacket) ([]byte, error) {
	src, err := netip.ParseAddr(p.src)
	if err != nil {
		return nil, err
	}
	dst, err := netip.ParseAddr(p.dst)
	if err != nil {
		return nil, err
	}
	var l4 []byte
	switch p.proto {
	case 6:
		l4 = make([]byte, 20+p.payload)
		l4[12] = 5 << 4 // data offset: 5 words
		l4[13] = p.flags
		binary.BigEndian.PutUint16(l4[14:], 65535) // window
	case 17:
		l4 = make([]byte, 8+p.payload)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	default:
		return nil, fmt.Errorf("protocol %d: want 6 or 17", p.proto)
	}
	binary.BigEndian.PutUint16(l4[0:], p.sport)
	binary.BigEndian.PutUint16(l4[2:], p.dport)
	ip := make([]byte, 20, 20+len(l4))
	ip[0] = 0x45 // IPv4, 5-word header
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8] = 64 // TTL
	ip[9] = p.proto
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	eth := []byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00} // dst, src MAC, IPv4
	return append(append(eth, ip...), l4...), nil
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// shipperCapture is the traffic of the capture: an HTTP exchange, a
// connection refused with a RST, a DNS query and answer, and a one-way UDP
// datagram. softflowd exports each direction of a conversation as its own
// IPFIX record, so this is seven flows.
func shipperCapture(t0 time.Time) []pcapPacket {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const (
		syn, ack, psh, fin, rst = 0x02, 0x10, 0x08, 0x01, 0x04
	)
	return []pcapPacket{
		{at(0), "10.1.1.1", "10.2.2.2", 40001, 80, 6, syn, 0},
		{at(1), "10.2.2.2", "10.1.1.1", 80, 40001, 6, syn | ack, 0},
		{at(2), "10.1.1.1", "10.2.2.2", 40001, 80, 6, ack, 0},
		{at(3), "10.1.1.1", "10.2.2.2", 40001, 80, 6, psh | ack, 120},
		{at(5), "10.2.2.2", "10.1.1.1", 80, 40001, 6, psh | ack, 1400},
		{at(6), "10.1.1.1", "10.2.2.2", 40001, 80, 6, fin | ack, 0},
		{at(7), "10.2.2.2", "10.1.1.1", 80, 40001, 6, fin | ack, 0},
		{at(8), "10.1.1.1", "10.2.2.2", 40001, 80, 6, ack, 0},
		{at(10), "10.1.1.5", "10.2.2.2", 40003, 23, 6, syn, 0},
		{at(11), "10.2.2.2", "10.1.1.5", 23, 40003, 6, rst | ack, 0},
		{at(20), "10.1.1.1", "10.2.2.53", 53000, 53, 17, 0, 30},
		{at(21), "10.2.2.53", "10.1.1.1", 53, 53000, 17, 0, 90},
		{at(30), "10.1.1.9", "10.2.2.9", 5000, 9999, 17, 0, 10},
	}
}

// lockedBuffer collects a child process's output for another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

var softflowdExported = regexp.MustCompile(`Flows exported: \d+ \((\d+) records\)`)

// TestShipperSoftflowdNfacctd: softflowd -r capture.pcap -v 10 → nfacctd
// (plugins: kafka, kafka_output: json) → the embedded broker → the stage.
// The stage must turn exactly the records softflowd exported into feature
// rows, with the addresses, ports and counters of the capture.
func TestShipperSoftflowdNfacctd(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: runs softflowd, nfacctd, a broker and the stage")
	}
	softflowd, err1 := exec.LookPath("softflowd")
	nfacctd, err2 := exec.LookPath("nfacctd")
	if err1 != nil || err2 != nil {
		t.Skip("needs Debian's softflowd and pmacct (nfacctd) installed (apt-get install softflowd pmacct); .ci/run installs them")
	}
	dir := t.TempDir()
	const topic = "flows.pmacct"
	e := startBroker(t, 1, topic)

	// The capture is dated just now so that the stage validates it
	// against the real clock, as in production.
	pcap := filepath.Join(dir, "capture.pcap")
	t0 := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
	capture := shipperCapture(t0)
	if err := writePcap(pcap, capture); err != nil {
		t.Fatal(err)
	}

	host, port, _ := net.SplitHostPort(e.Addr())
	nfPort := freeUDPPort(t)
	conf := filepath.Join(dir, "nfacctd.conf")
	// timestamps_since_epoch makes the plugin write "seconds.micros"
	// rather than local date strings; kafka_refresh_time flushes every
	// second instead of every minute.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: %d
plugins: kafka
kafka_output: json
kafka_topic: %s
kafka_broker_host: %s
kafka_broker_port: %s
kafka_refresh_time: 1
timestamps_since_epoch: true
aggregate: src_host,dst_host,src_port,dst_port,proto,tcpflags,timestamp_start,timestamp_end
`, nfPort, topic, host, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	var nfOut lockedBuffer
	nf := exec.Command(nfacctd, "-f", conf)
	nf.Stdout, nf.Stderr = &nfOut, &nfOut
	// nfacctd forks its plugins: give it a process group of its own so the
	// cleanup ends the plugins too, by the group's id.
	nf.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nf.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- nf.Wait() }()
	stopNfacctd := sync.OnceFunc(func() {
		syscall.Kill(-nf.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-nf.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	t.Cleanup(func() {
		stopNfacctd()
		if t.Failed() {
			t.Logf("nfacctd output:\n%s", nfOut.String())
		}
	})
	eventually(t, 15*time.Second, func() error {
		// The core listens first; records that reach it before the
		// Kafka plugin is set up are lost.
		out := nfOut.String()
		if !strings.Contains(out, "waiting for NetFlow/IPFIX data") || !strings.Contains(out, "JSON: setting object handlers") {
			return fmt.Errorf("nfacctd is not ready yet; output:\n%s", out)
		}
		return nil
	})

	cfg := testConfig(t, e, map[string]string{topic: FormatPmacct})
	cfg.Ingest.Partitions = 2
	reg := prometheus.NewRegistry()
	s, err := newStage(cfg, nil, reg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("stage Run = %v", err)
		}
	}()

	// -A milli exports absolute flow times, which nfacctd passes on; the
	// default (uptime offsets) gives times that validation rightly refuses.
	// No -c: with a control socket softflowd 1.1.0 keeps running after
	// the capture ends, waiting for commands.
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	sf := exec.CommandContext(sctx, softflowd, "-r", pcap, "-n", "127.0.0.1:"+strconv.Itoa(nfPort), "-v", "10", "-A", "milli",
		"-d", "-p", filepath.Join(dir, "softflowd.pid"))
	sfOut, err := sf.CombinedOutput()
	if err != nil {
		t.Fatalf("softflowd: %v\n%s", err, sfOut)
	}
	m := softflowdExported.FindSubmatch(sfOut)
	if m == nil {
		t.Fatalf("softflowd did not report its export count:\n%s", sfOut)
	}
	exported, _ := strconv.Atoi(string(m[1]))
	t.Logf("softflowd exported %d IPFIX records", exported)
	if exported != 7 {
		t.Errorf("softflowd exported %d records, want 7 (two per conversation, one for the one-way datagram)", exported)
	}

	eventually(t, 30*time.Second, func() error {
		if got := testutil.ToFloat64(s.met.flows); got < float64(exported) {
			return fmt.Errorf("%v of %d flows produced; counts %+v, dead letters %v", got, exported, s.counts("pmacct"), s.deadLetterReasons())
		}
		return nil
	})
	// Stop the collector (it flushes its cache) and let the stage drain
	// whatever else reached the topic, so that a surplus shows.
	stopNfacctd()
	inTopic := readTopic(t, e.Addr(), topic)
	c := waitHandled(t, s, "pmacct", len(inTopic), 15*time.Second)
	t.Logf("nfacctd wrote %d records: %+v", len(inTopic), c)
	for _, r := range inTopic {
		t.Logf("  %s", r.Value)
	}
	if got := testutil.ToFloat64(s.met.flows); got != float64(exported) {
		t.Errorf("flows_total = %v, want %d, softflowd's count", got, exported)
	}
	if c.ok != float64(exported) || c.dead != 0 {
		t.Errorf("counts = %+v, want %d ok and none dead-lettered (dead letters %v)", c, exported, s.deadLetterReasons())
	}

	// The rows are the capture's flows.
	type key struct {
		src, dst     string
		sport, dport uint16
	}
	want := map[key]bool{}
	for _, p := range capture {
		want[key{p.src, p.dst, p.sport, p.dport}] = true
	}
	msgs := readTopic(t, e.Addr(), cfg.Topic("features"))
	rows := 0
	for _, msg := range msgs {
		v, err := features.Decode(msg.Value, memory.NewGoAllocator())
		if err != nil {
			t.Fatal(err)
		}
		for i := range v.Len() {
			rows++
			k := key{v.Host(i), v.Peer(i), v.SrcPort(i), v.DstPort(i)}
			if !want[k] {
				t.Errorf("row %+v is no flow of the capture", k)
			}
			delete(want, k)
			if start := time.Unix(0, v.StartNs(i)); start.Before(t0.Add(-time.Second)) || start.After(t0.Add(time.Second)) {
				t.Errorf("row %+v starts %v, want within a second of the capture's %v", k, start, t0)
			}
		}
		v.Release()
	}
	if rows != exported || len(want) != 0 {
		t.Errorf("features topic holds %d rows, want %d; flows without a row: %v", rows, exported, want)
	}
}
