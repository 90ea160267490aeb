package ingest

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/schemas"
)

// Minimal valid records per format, which the error cases below break one
// field at a time.
const (
	gfOK      = `{"type":"IPFIX","time_received_ns":1795334525400000000,"time_flow_start_ns":1795334460012000000,"time_flow_end_ns":1795334518907000000,"bytes":1843902,"packets":1290,"src_addr":"10.1.2.3","dst_addr":"93.184.216.34","etype":"IPv4","proto":"TCP","src_port":51514,"dst_port":443,"tcp_flags":27,"as_path":[64500,15133],"bgp_communities":[]}`
	pmOK      = `{"event_type": "purge", "ip_src": "10.1.2.3", "ip_dst": "10.1.0.53", "port_src": 53123, "port_dst": 53, "tcp_flags": "0", "ip_proto": "udp", "timestamp_start": "1795334521.000000", "timestamp_end": "1795334521.000000", "packets": 1, "bytes": 71}`
	npOK      = `{"IPV4_SRC_ADDR":"10.1.2.3","IPV4_DST_ADDR":"10.1.0.53","L4_SRC_PORT":53123,"L4_DST_PORT":53,"PROTOCOL":17,"IN_BYTES":71,"OUT_BYTES":187,"IN_PKTS":1,"OUT_PKTS":1,"FIRST_SWITCHED":1795334521,"LAST_SWITCHED":1795334521}`
	zjOK      = `{"ts":1795334460.012,"uid":"C1","id.orig_h":"10.1.2.3","id.orig_p":51514,"id.resp_h":"93.184.216.34","id.resp_p":443,"proto":"tcp","duration":58.895012,"conn_state":"SF","history":"ShADadFf","orig_pkts":640,"orig_ip_bytes":59711,"resp_pkts":1290,"resp_ip_bytes":1843902}`
	ztOK      = "1795334521.005000\tC2\t10.1.2.3\t53123\t10.1.0.53\t53\tudp\tdns\t0.000210\t43\t159\tSF\tT\tT\t0\tDd\t1\t71\t1\t187\t(empty)"
	suOK      = `{"timestamp":"2026-11-22T08:02:01.005210+0000","event_type":"flow","src_ip":"10.1.2.3","src_port":53123,"dest_ip":"10.1.0.53","dest_port":53,"proto":"UDP","app_proto":"dns","flow":{"pkts_toserver":1,"pkts_toclient":1,"bytes_toserver":85,"bytes_toclient":201,"start":"2026-11-22T08:02:01.005000+0000","end":"2026-11-22T08:02:01.005210+0000"}}`
	vpcOK     = "2 123456789010 eni-0f1e2d3c4b5a69788 10.1.2.3 93.184.216.34 51514 443 6 640 59711 1795334460 1795334519 ACCEPT OK"
	nfOK      = `{"type":"FLOW","first":"2026-11-22T08:15:25.918","last":"2026-11-22T08:15:25.918","in_packets":1,"in_bytes":40,"proto":6,"tcp_flags":"...A.R..","src_port":110,"dst_port":57714,"src4_addr":"10.1.2.3","dst4_addr":"10.1.9.9"}`
	cicHeader = "Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Total Fwd Packet,Total Bwd packets,Total Length of Fwd Packet,Total Length of Bwd Packet,SYN Flag Count,Label"
	cicOK     = "x,192.168.10.5,58190,192.168.10.3,53,17,2017-07-06 12:40:01.250000,245,2,2,70,102,0,BENIGN"
)

type decodeCase struct {
	name     string
	format   string
	before   []string // records decoded first on the same partition
	rec      string
	want     Reason     // expected dead-letter reason, or ""
	wantSkip SkipReason // expected skip reason, or ""
	wantN    int        // flows expected when neither is set
}

func decodeCases() []decodeCase {
	r := strings.NewReplacer
	gf := func(old, new string) string { return r(old, new).Replace(gfOK) }
	pm := func(old, new string) string { return r(old, new).Replace(pmOK) }
	np := func(old, new string) string { return r(old, new).Replace(npOK) }
	zj := func(old, new string) string { return r(old, new).Replace(zjOK) }
	su := func(old, new string) string { return r(old, new).Replace(suOK) }
	nf := func(old, new string) string { return r(old, new).Replace(nfOK) }
	zt := func(col int, v string) string {
		f := strings.Split(ztOK, "\t")
		f[col] = v
		return strings.Join(f, "\t")
	}
	vp := func(col int, v string) string {
		f := strings.Fields(vpcOK)
		f[col] = v
		return strings.Join(f, " ")
	}
	cc := func(col int, v string) string {
		f := strings.Split(cicOK, ",")
		f[col] = v
		return strings.Join(f, ",")
	}
	hdr := []string{cicHeader}
	return []decodeCase{
		// goflow2: every reason the decoder can give.
		{name: "goflow2 ok", format: FormatGoflow2, rec: gfOK, wantN: 1},
		{name: "goflow2 array", format: FormatGoflow2, rec: "[" + gfOK + "," + gfOK + "]", wantN: 2},
		{name: "goflow2 two lines", format: FormatGoflow2, rec: gfOK + "\n" + gfOK + "\n", wantN: 2},
		{name: "goflow2 empty", format: FormatGoflow2, rec: " \n", wantSkip: SkipEmpty},
		{name: "goflow2 empty array", format: FormatGoflow2, rec: "[]", wantSkip: SkipEmpty},
		{name: "goflow2 truncated", format: FormatGoflow2, rec: gfOK[:len(gfOK)-1], want: ReasonMalformed},
		{name: "goflow2 cut mid-key", format: FormatGoflow2, rec: gfOK[:40], want: ReasonMalformed},
		{name: "goflow2 trailing garbage", format: FormatGoflow2, rec: gfOK + "x", want: ReasonMalformed},
		{name: "goflow2 trailing comma", format: FormatGoflow2, rec: gf(`,"bgp_communities":[]}`, `,"bgp_communities":[],}`), want: ReasonMalformed},
		{name: "goflow2 missing colon", format: FormatGoflow2, rec: gf(`"packets":1290`, `"packets" 1290`), want: ReasonMalformed},
		{name: "goflow2 bare word", format: FormatGoflow2, rec: gf(`"IPFIX"`, `IPFIX`), want: ReasonMalformed},
		{name: "goflow2 lone surrogate", format: FormatGoflow2, rec: gf(`"IPFIX"`, `"\ud800"`), wantN: 1},
		{name: "goflow2 deep nesting", format: FormatGoflow2, rec: gf(`"as_path":[64500,15133]`, `"as_path":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)), want: ReasonMalformed},
		{name: "goflow2 unterminated nested array", format: FormatGoflow2, rec: gf(`"as_path":[64500,15133]`, `"as_path":[64500,15133`), want: ReasonMalformed},
		{name: "goflow2 bad nested value", format: FormatGoflow2, rec: gf(`[64500,15133]`, `[64500,tru]`), want: ReasonMalformed},
		{name: "goflow2 bad escape", format: FormatGoflow2, rec: gf(`"IPFIX"`, `"IP\qFIX"`), want: ReasonMalformed},
		{name: "goflow2 control char", format: FormatGoflow2, rec: gf(`"IPFIX"`, "\"IP\x01FIX\""), want: ReasonMalformed},
		{name: "goflow2 leading zero number", format: FormatGoflow2, rec: gf(`"packets":1290`, `"packets":01290`), want: ReasonMalformed},
		{name: "goflow2 not an object", format: FormatGoflow2, rec: `"hello"`, want: ReasonMalformed},
		{name: "goflow2 array of numbers", format: FormatGoflow2, rec: `[1,2]`, want: ReasonMalformed},
		{name: "goflow2 unknown proto name", format: FormatGoflow2, rec: gf(`"TCP"`, `"TPC"`), want: ReasonMalformed},
		{name: "goflow2 proto number too big", format: FormatGoflow2, rec: gf(`"TCP"`, `300`), want: ReasonMalformed},
		{name: "goflow2 time not a number", format: FormatGoflow2, rec: gf(`"time_flow_start_ns":1795334460012000000`, `"time_flow_start_ns":"soon"`), want: ReasonMalformed},
		{name: "goflow2 time overflows", format: FormatGoflow2, rec: gf(`"time_flow_start_ns":1795334460012000000`, `"time_flow_start_ns":18446744073709551615`), want: ReasonTimeOutOfWindow},
		{name: "goflow2 missing src", format: FormatGoflow2, rec: gf(`"src_addr":"10.1.2.3",`, ``), want: ReasonMissingField},
		{name: "goflow2 null dst", format: FormatGoflow2, rec: gf(`"93.184.216.34"`, `null`), want: ReasonMissingField},
		{name: "goflow2 missing proto", format: FormatGoflow2, rec: gf(`"proto":"TCP",`, ``), want: ReasonMissingField},
		{name: "goflow2 missing times", format: FormatGoflow2, rec: gf(`"time_received_ns":1795334525400000000,"time_flow_start_ns":1795334460012000000,`, ``), want: ReasonMissingField},
		{name: "goflow2 empty address", format: FormatGoflow2, rec: gf(`"10.1.2.3"`, `""`), want: ReasonBadAddress},
		{name: "goflow2 bad address", format: FormatGoflow2, rec: gf(`"10.1.2.3"`, `"10.1.2.300"`), want: ReasonBadAddress},
		{name: "goflow2 address as number", format: FormatGoflow2, rec: gf(`"10.1.2.3"`, `167838211`), want: ReasonBadAddress},
		{name: "goflow2 port too big", format: FormatGoflow2, rec: gf(`"dst_port":443`, `"dst_port":65536`), want: ReasonBadPort},
		{name: "goflow2 port negative", format: FormatGoflow2, rec: gf(`"dst_port":443`, `"dst_port":-1`), want: ReasonBadPort},
		{name: "goflow2 port fraction", format: FormatGoflow2, rec: gf(`"dst_port":443`, `"dst_port":44.3`), want: ReasonBadPort},
		{name: "goflow2 port as bool", format: FormatGoflow2, rec: gf(`"dst_port":443`, `"dst_port":true`), want: ReasonBadPort},
		{name: "goflow2 bytes negative", format: FormatGoflow2, rec: gf(`"bytes":1843902`, `"bytes":-5`), want: ReasonBadCounter},
		{name: "goflow2 bytes overflow", format: FormatGoflow2, rec: gf(`"bytes":1843902`, `"bytes":18446744073709551616`), want: ReasonBadCounter},
		{name: "goflow2 bytes float exponent overflow", format: FormatGoflow2, rec: gf(`"bytes":1843902`, `"bytes":1e30`), want: ReasonBadCounter},
		{name: "goflow2 bytes integral float", format: FormatGoflow2, rec: gf(`"bytes":1843902`, `"bytes":1.843902e6`), wantN: 1},
		{name: "goflow2 flags not a number", format: FormatGoflow2, rec: gf(`"tcp_flags":27`, `"tcp_flags":"SA"`), want: ReasonBadCounter},
		{name: "goflow2 escaped key", format: FormatGoflow2, rec: gf(`"src_addr"`, `"src\u005faddr"`), wantN: 1},
		{name: "goflow2 escaped address", format: FormatGoflow2, rec: gf(`"10.1.2.3"`, `"10.1.2.\u0033"`), wantN: 1},

		// pmacct
		{name: "pmacct ok", format: FormatPmacct, rec: pmOK, wantN: 1},
		{name: "pmacct purge_close marker", format: FormatPmacct, rec: `{"event_type": "purge_close", "seq": 3, "writer_id": "flows/1", "purged_entries": 12}`, wantSkip: SkipNonFlow},
		{name: "pmacct flags not decimal", format: FormatPmacct, rec: pm(`"tcp_flags": "0"`, `"tcp_flags": "0x12"`), want: ReasonBadCounter},
		{name: "pmacct missing proto", format: FormatPmacct, rec: pm(`"ip_proto": "udp", `, ``), want: ReasonMissingField},
		{name: "pmacct bad timestamp", format: FormatPmacct, rec: pm(`"1795334521.000000", "timestamp_end"`, `"yesterday", "timestamp_end"`), want: ReasonMalformed},
		{name: "pmacct bad date", format: FormatPmacct, rec: pm(`"1795334521.000000", "timestamp_end"`, `"2026-13-22 08:00:00", "timestamp_end"`), want: ReasonMalformed},
		{name: "pmacct bad port", format: FormatPmacct, rec: pm(`"port_dst": 53`, `"port_dst": 99999`), want: ReasonBadPort},
		{name: "pmacct bad address", format: FormatPmacct, rec: pm(`"10.1.0.53"`, `"10.1.0"`), want: ReasonBadAddress},
		{name: "pmacct negative packets", format: FormatPmacct, rec: pm(`"packets": 1`, `"packets": -1`), want: ReasonBadCounter},

		// nProbe
		{name: "nprobe ok", format: FormatNprobe, rec: npOK, wantN: 1},
		{name: "nprobe missing protocol", format: FormatNprobe, rec: np(`"PROTOCOL":17,`, ``), want: ReasonMissingField},
		{name: "nprobe missing src", format: FormatNprobe, rec: np(`"IPV4_SRC_ADDR":"10.1.2.3",`, ``), want: ReasonMissingField},
		{name: "nprobe bad port", format: FormatNprobe, rec: np(`"L4_SRC_PORT":53123`, `"L4_SRC_PORT":65536`), want: ReasonBadPort},
		{name: "nprobe negative bytes", format: FormatNprobe, rec: np(`"OUT_BYTES":187`, `"OUT_BYTES":-187`), want: ReasonBadCounter},
		{name: "nprobe bad ipv6", format: FormatNprobe, rec: np(`"IPV4_SRC_ADDR":"10.1.2.3"`, `"IPV6_SRC_ADDR":"2001:db8::g"`), want: ReasonBadAddress},
		{name: "nprobe bad time", format: FormatNprobe, rec: np(`"FIRST_SWITCHED":1795334521`, `"FIRST_SWITCHED":"noon"`), want: ReasonMalformed},

		// Zeek JSON
		{name: "zeek-json ok", format: FormatZeekJSON, rec: zjOK, wantN: 1},
		{name: "zeek-json missing ts", format: FormatZeekJSON, rec: zj(`"ts":1795334460.012,`, ``), want: ReasonMissingField},
		{name: "zeek-json missing resp_h", format: FormatZeekJSON, rec: zj(`"id.resp_h":"93.184.216.34",`, ``), want: ReasonMissingField},
		{name: "zeek-json bad port", format: FormatZeekJSON, rec: zj(`"id.orig_p":51514`, `"id.orig_p":515140`), want: ReasonBadPort},
		{name: "zeek-json negative ip bytes", format: FormatZeekJSON, rec: zj(`"orig_ip_bytes":59711`, `"orig_ip_bytes":-1`), want: ReasonBadCounter},
		{name: "zeek-json bad resp_h", format: FormatZeekJSON, rec: zj(`"93.184.216.34"`, `"93.184.216"`), want: ReasonBadAddress},
		{name: "zeek-json proto as array", format: FormatZeekJSON, rec: zj(`"proto":"tcp"`, `"proto":["tcp"]`), want: ReasonMalformed},
		{name: "zeek-json bad ts", format: FormatZeekJSON, rec: zj(`"ts":1795334460.012`, `"ts":"noon"`), want: ReasonMalformed},
		{name: "zeek-json negative ts", format: FormatZeekJSON, rec: zj(`"ts":1795334460.012`, `"ts":-1795334460.012`), want: ReasonTimeOutOfWindow},

		// Zeek TSV
		{name: "zeek-tsv ok", format: FormatZeekTSV, rec: ztOK, wantN: 1},
		{name: "zeek-tsv header only", format: FormatZeekTSV, rec: "#separator \\x09\n#path\tconn\n", wantSkip: SkipHeader},
		{name: "zeek-tsv bad port", format: FormatZeekTSV, rec: zt(3, "port"), want: ReasonBadPort},
		{name: "zeek-tsv bad ts", format: FormatZeekTSV, rec: zt(0, "1795334521,005"), want: ReasonMalformed},
		{name: "zeek-tsv unset orig_h", format: FormatZeekTSV, rec: zt(2, "-"), want: ReasonMissingField},
		{name: "zeek-tsv bad address", format: FormatZeekTSV, rec: zt(4, "10.1.0.530"), want: ReasonBadAddress},
		{name: "zeek-tsv bad counter", format: FormatZeekTSV, rec: zt(17, "seventy"), want: ReasonBadCounter},
		{name: "zeek-tsv short row", format: FormatZeekTSV, rec: "1795334521.005000\tC2\t10.1.2.3\t53123", want: ReasonMissingField},
		{name: "zeek-tsv garbage", format: FormatZeekTSV, rec: "hello world", want: ReasonMissingField},
		{name: "zeek-tsv bad line in chunk", format: FormatZeekTSV, rec: ztOK + "\n" + zt(3, "-5") + "\n", want: ReasonBadPort},
		{name: "zeek-tsv custom separator", format: FormatZeekTSV, before: []string{"#separator \\x2c", "#fields,ts,id.orig_h,id.resp_h,proto"}, rec: "1795334521.5,10.1.2.3,10.1.0.53,udp", wantN: 1},
		{name: "zeek-tsv other log", format: FormatZeekTSV, before: []string{"#path\tdns"}, rec: ztOK, wantSkip: SkipNonFlow},

		// Suricata
		{name: "suricata ok", format: FormatSuricata, rec: suOK, wantN: 1},
		{name: "suricata dns event", format: FormatSuricata, rec: `{"timestamp":"2026-11-22T08:02:01.005210+0000","event_type":"dns","src_ip":"10.1.2.3","dest_ip":"10.1.0.53","proto":"UDP","dns":{"type":"query","rrname":"example.com"}}`, wantSkip: SkipNonFlow},
		{name: "suricata missing event_type", format: FormatSuricata, rec: su(`"event_type":"flow",`, ``), want: ReasonMissingField},
		{name: "suricata flow without flow object", format: FormatSuricata, rec: `{"timestamp":"2026-11-22T08:02:01.005210+0000","event_type":"flow","src_ip":"10.1.2.3","dest_ip":"10.1.0.53","proto":"UDP"}`, want: ReasonMissingField},
		{name: "suricata bad tcp_flags", format: FormatSuricata, rec: su(`"app_proto":"dns",`, `"app_proto":"dns","tcp":{"tcp_flags":"zz"},`), want: ReasonBadCounter},
		{name: "suricata bad flow.start", format: FormatSuricata, rec: su(`"start":"2026-11-22T08:02:01.005000+0000"`, `"start":"2026-11-22 noon"`), want: ReasonMalformed},
		{name: "suricata bad zone", format: FormatSuricata, rec: su(`"start":"2026-11-22T08:02:01.005000+0000"`, `"start":"2026-11-22T08:02:01.005000+2500"`), want: ReasonMalformed},
		{name: "suricata bad dest_port", format: FormatSuricata, rec: su(`"dest_port":53`, `"dest_port":"dns"`), want: ReasonBadPort},
		{name: "suricata negative bytes", format: FormatSuricata, rec: su(`"bytes_toclient":201`, `"bytes_toclient":-201`), want: ReasonBadCounter},
		{name: "suricata service not utf-8", format: FormatSuricata, rec: su(`"dns"`, "\"dn\xffs\""), wantN: 1},
		{name: "suricata bad nested json", format: FormatSuricata, rec: su(`"bytes_toclient":201`, `"bytes_toclient":201,`), want: ReasonMalformed},

		// VPC
		{name: "vpc ok", format: FormatVPC, rec: vpcOK, wantN: 1},
		{name: "vpc nodata", format: FormatVPC, rec: "2 123456789010 eni-0f1e2d3c4b5a69788 - - - - - - - 1795334600 1795334660 - NODATA", wantSkip: SkipNoData},
		{name: "vpc wrong field count", format: FormatVPC, rec: vpcOK + " extra", want: ReasonNoHeader},
		{name: "vpc wrong count after header", format: FormatVPC, before: []string{"version srcaddr dstaddr protocol start"}, rec: vpcOK, want: ReasonMalformed},
		{name: "vpc custom header", format: FormatVPC, before: []string{"version srcaddr dstaddr protocol start"}, rec: "5 10.1.2.3 10.1.0.53 17 1795334521", wantN: 1},
		{name: "vpc bad port", format: FormatVPC, rec: vp(6, "https"), want: ReasonBadPort},
		{name: "vpc missing srcaddr", format: FormatVPC, rec: vp(3, "-"), want: ReasonMissingField},
		{name: "vpc bad address", format: FormatVPC, rec: vp(4, "93.184.216.34.5"), want: ReasonBadAddress},
		{name: "vpc bad bytes", format: FormatVPC, rec: vp(9, "-59711"), want: ReasonBadCounter},
		{name: "vpc bad start", format: FormatVPC, rec: vp(10, "today"), want: ReasonMalformed},

		// CICFlowMeter
		{name: "cic ok", format: FormatCIC, before: hdr, rec: cicOK, wantN: 1},
		{name: "cic header only", format: FormatCIC, rec: cicHeader, wantSkip: SkipHeader},
		{name: "cic header and row", format: FormatCIC, rec: cicHeader + "\n" + cicOK + "\n" + cicOK, wantN: 2},
		{name: "cic no header", format: FormatCIC, rec: cicOK, want: ReasonNoHeader},
		{name: "cic column count", format: FormatCIC, before: hdr, rec: cicOK + ",extra", want: ReasonMalformed},
		{name: "cic bad src ip", format: FormatCIC, before: hdr, rec: cc(1, "192.168.10"), want: ReasonBadAddress},
		{name: "cic missing dst ip", format: FormatCIC, before: hdr, rec: cc(3, ""), want: ReasonMissingField},
		{name: "cic negative duration", format: FormatCIC, before: hdr, rec: cc(7, "-1"), want: ReasonEndBeforeStart},
		{name: "cic bad timestamp", format: FormatCIC, before: hdr, rec: cc(6, "2017-07-06"), want: ReasonMalformed},
		{name: "cic 12-hour timestamp", format: FormatCIC, before: hdr, rec: cc(6, "06/07/2017 01:40:01 PM"), wantN: 1},
		{name: "cic bad 12-hour timestamp", format: FormatCIC, before: hdr, rec: cc(6, "06/07/2017 13:40:01 PM"), want: ReasonMalformed},
		{name: "cic NaN counter", format: FormatCIC, before: hdr, rec: cc(8, "NaN"), want: ReasonBadCounter},
		{name: "cic Infinity counter", format: FormatCIC, before: hdr, rec: cc(10, "Infinity"), want: ReasonBadCounter},
		{name: "cic bad port", format: FormatCIC, before: hdr, rec: cc(4, "65536"), want: ReasonBadPort},
		{name: "cic commas only", format: FormatCIC, before: hdr, rec: ",,,,,,,,,,,,,", wantSkip: SkipEmpty},

		// nfdump
		{name: "nfdump ok", format: FormatNfdump, rec: nfOK, wantN: 1},
		{name: "nfdump missing first", format: FormatNfdump, rec: nf(`"first":"2026-11-22T08:15:25.918",`, ``), want: ReasonMissingField},
		{name: "nfdump bad flags", format: FormatNfdump, rec: nf(`"...A.R.."`, `"...A.X.."`), want: ReasonBadCounter},
		{name: "nfdump not a flow", format: FormatNfdump, rec: nf(`"FLOW"`, `"EVENT"`), wantSkip: SkipNonFlow},
		{name: "nfdump bad first", format: FormatNfdump, rec: nf(`"2026-11-22T08:15:25.918",`, `"22.11.2026 08:15",`), want: ReasonMalformed},

		// auto
		{name: "auto unknown json", format: FormatAuto, rec: `{"hello":"world"}`, want: ReasonUnknownFormat},
		{name: "auto binary", format: FormatAuto, rec: "\x01\x02\x03", want: ReasonUnknownFormat},
		{name: "auto goflow2", format: FormatAuto, rec: gfOK, wantN: 1},
		{name: "auto suricata stats", format: FormatAuto, rec: `{"event_type":"stats","stats":{"uptime":1}}`, wantSkip: SkipNonFlow},
		{name: "auto blank", format: FormatAuto, rec: "\n", wantSkip: SkipEmpty},

		// avro framing (round trips are in TestAvro)
		{name: "avro truncated header", format: FormatAvro, rec: "\x00\x00\x00", want: ReasonBadSchema},
		{name: "avro bad magic", format: FormatAvro, rec: "\x01\x00\x00\x00\x01rest", want: ReasonBadSchema},
		{name: "avro unknown id", format: FormatAvro, rec: "\x00\x00\x00\x00\x63rest", want: ReasonBadSchema},
		{name: "avro garbage body", format: FormatAvro, rec: "\x00\x00\x00\x00\x01\xff\xff\xff", want: ReasonBadSchema},
	}
}

func TestDecodeCases(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			dec := mustDecoders(t, DefaultDecoderConfig())[tc.format]
			src := schemas.Coord{Topic: "flows.test", Partition: 3, Offset: 100}
			for _, b := range tc.before {
				if _, err := dec.Decode(nil, []byte(b), src); err != nil {
					if _, skip := err.(*Skip); !skip {
						t.Fatalf("Decode(%q) = %v, want a flow or a skip", b, err)
					}
				}
			}
			// A flow already in dst must survive, and nothing else may be
			// appended on failure.
			sentinel := schemas.Flow{Service: "sentinel"}
			flows, err := dec.Decode([]schemas.Flow{sentinel}, []byte(tc.rec), src)
			if len(flows) == 0 || flows[0].Service != "sentinel" {
				t.Fatalf("Decode lost the caller's dst[0]: %+v", flows)
			}
			flows = flows[1:]
			var re *RecordError
			var sk *Skip
			switch {
			case tc.want != "":
				if !errors.As(err, &re) {
					t.Fatalf("Decode(%q) = %d flows, %v; want RecordError %s", tc.rec, len(flows), err, tc.want)
				}
				if re.Reason != tc.want {
					t.Errorf("Decode(%q) reason = %s (%v), want %s", tc.rec, re.Reason, err, tc.want)
				}
				if len(flows) != 0 {
					t.Errorf("Decode(%q) appended %d flows with an error", tc.rec, len(flows))
				}
			case tc.wantSkip != "":
				if !errors.As(err, &sk) || sk.Reason != tc.wantSkip {
					t.Fatalf("Decode(%q) = %v, want skip %s", tc.rec, err, tc.wantSkip)
				}
				if len(flows) != 0 {
					t.Errorf("Decode(%q) appended %d flows with a skip", tc.rec, len(flows))
				}
			default:
				if err != nil {
					t.Fatalf("Decode(%q) = %v, want %d flows", tc.rec, err, tc.wantN)
				}
				if len(flows) != tc.wantN {
					t.Fatalf("Decode(%q) = %d flows, want %d", tc.rec, len(flows), tc.wantN)
				}
				for i, f := range flows {
					want := src
					want.Index = int32(i)
					if f.Source != want {
						t.Errorf("flow %d Source = %+v, want %+v", i, f.Source, want)
					}
					if !f.SrcAddr.IsValid() || !f.DstAddr.IsValid() || f.StartNs == 0 {
						t.Errorf("flow %d incomplete: %+v", i, f)
					}
				}
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	cfg := DefaultDecoderConfig()
	cfg.MaxRecordBytes = 64
	for name, dec := range mustDecoders(t, cfg) {
		rec := []byte(gfOK) // longer than 64 bytes
		_, err := dec.Decode(nil, rec, schemas.Coord{Topic: "flows.x"})
		var re *RecordError
		if !errors.As(err, &re) || re.Reason != ReasonTooLarge || !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: Decode(%d bytes) = %v, want too_large", name, len(rec), err)
		}
	}
	if _, err := mustDecoders(t, cfg)[FormatVPC].Decode(nil, []byte(vpcOK[:60]), schemas.Coord{}); errors.Is(err, ErrTooLarge) {
		t.Errorf("60-byte record rejected as too large: %v", err)
	}
}

// TestStreamsAreSeparate checks that header state belongs to one topic
// partition: a CIC header on partition 0 does not apply to partition 1.
func TestStreamsAreSeparate(t *testing.T) {
	dec := mustDecoders(t, DefaultDecoderConfig())[FormatCIC]
	p0 := schemas.Coord{Topic: "flows.cic", Partition: 0}
	p1 := schemas.Coord{Topic: "flows.cic", Partition: 1}
	other := schemas.Coord{Topic: "flows.cic2", Partition: 0}
	if _, err := dec.Decode(nil, []byte(cicHeader), p0); !isSkip(err, SkipHeader) {
		t.Fatalf("header: %v", err)
	}
	if _, err := dec.Decode(nil, []byte(cicOK), p0); err != nil {
		t.Errorf("row after header on p0: %v", err)
	}
	for _, c := range []schemas.Coord{p1, other} {
		_, err := dec.Decode(nil, []byte(cicOK), c)
		var re *RecordError
		if !errors.As(err, &re) || re.Reason != ReasonNoHeader {
			t.Errorf("row on %+v without header = %v, want no_header", c, err)
		}
	}
}

func isSkip(err error, r SkipReason) bool {
	var sk *Skip
	return errors.As(err, &sk) && sk.Reason == r
}

func TestZeekFlags(t *testing.T) {
	for _, tc := range []struct {
		history, state string
		want           uint8
	}{
		{"S", "S0", flagSYN},
		{"Sr", "REJ", flagSYN | flagRST},
		{"ShADadFf", "SF", flagSYN | flagACK | flagPSH | flagFIN},
		{"", "RSTO", flagSYN | flagACK | flagRST},
		{"", "OTH", 0},
		{"^hA", "SHR", flagSYN | flagACK | flagFIN},
	} {
		if got := zeekFlags([]byte(tc.history), []byte(tc.state)); got != tc.want {
			t.Errorf("zeekFlags(%q, %q) = %#x, want %#x", tc.history, tc.state, got, tc.want)
		}
	}
}

func TestParseProto(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint8
		ok   bool
	}{
		{"TCP", 6, true}, {"tcp", 6, true}, {"Tcp", 6, true}, {"17", 17, true},
		{"IPv6-ICMP", 58, true}, {"ipv6-icmp", 58, true}, {"ICMPv6", 58, true},
		{"HOPOPT", 0, true}, {"GRE", 47, true}, {"esp", 50, true}, {"SCTP", 132, true},
		{"", protoUnknown, true}, {"unknown_transport", protoUnknown, true},
		{"256", 0, false}, {"TPC", 0, false}, {"-6", 0, false},
		{"averyveryverylongprotocolname", 0, false},
	} {
		got, err := parseProto([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseProto(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseTimes(t *testing.T) {
	sec := func(b []byte) (int64, error) { return parseEpoch(b, 1e9) }
	ms := func(b []byte) (int64, error) { return parseEpoch(b, 1e6) }
	iso := func(b []byte) (int64, error) { return parseISOTime(b, time.UTC) }
	cic := func(b []byte) (int64, error) { return parseCICTime(b, time.UTC) }
	for _, tc := range []struct {
		in   string
		fn   func([]byte) (int64, error)
		want int64
		ok   bool
	}{
		{"1795335325.918000", sec, 1795335325918000000, true},
		{"1655071198.444458", sec, 1655071198444458000, true},
		{"1655071198.4444581239", sec, 1655071198444458123, true},
		{"1795335325918", ms, 1795335325918000000, true},
		{"1.6e9", sec, 1600000000000000000, true},
		{"2.5e-05", sec, 25000, true},
		{"9999999999999", sec, 0, false},
		{"12.3.4", sec, 0, false},
		{"NaN", sec, 0, false},
		{"", sec, 0, false},
		{"2017-07-06T12:39:06.818901+0000", iso, 1499344746818901000, true},
		{"2017-07-06T09:39:06.818901-03:00", iso, 1499344746818901000, true},
		{"2017-07-06 12:39:06Z", iso, 1499344746000000000, true},
		{"2017-07-06 12:39", iso, 1499344740000000000, true},
		{"2017-02-30 12:39:06Z", iso, 0, false},
		{"2017-07-06T12:39:06+0", iso, 0, false},
		{"3/7/2017 8:55", cic, 1499072100000000000, true},
		{"14/02/2018 08:31:01", cic, 1518597061000000000, true},
		{"14/02/2018 12:31:01 AM", cic, 1518568261000000000, true},
		{"14/02/2018 12:31:01 PM", cic, 1518611461000000000, true},
		{"2/14/2018 08:31:01", cic, 0, false},
	} {
		got, err := tc.fn([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parse %q = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"10.1.2.3", "10.1.2.3"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"},
		{"fe80::1%eth0", "fe80::1"},
		{"", ""}, {"10.1.2", ""}, {"010.1.2.3", ""}, {"example.com", ""},
	} {
		got, err := parseAddr([]byte(tc.in))
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseAddr(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("parseAddr(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		err             error
		outcome, reason string
	}{
		{nil, "ok", ""},
		{skipHeader, "skipped", "header"},
		{recErr(ReasonBadPort, "dst_port", ErrRange), "dead_lettered", "bad_port"},
		{errors.New("boom"), "dead_lettered", "internal"},
	} {
		o, r := Outcome(tc.err)
		if o != tc.outcome || r != tc.reason {
			t.Errorf("Outcome(%v) = %s, %s; want %s, %s", tc.err, o, r, tc.outcome, tc.reason)
		}
	}
	if len(Reasons()) != 12 || len(SkipReasons()) != 4 {
		t.Errorf("Reasons() = %v, SkipReasons() = %v", Reasons(), SkipReasons())
	}
}

func TestInternService(t *testing.T) {
	for in, want := range map[string]string{
		"DNS": "dns", "ssl": "ssl", "Kerberos": "kerberos", "dns,http": "dns,http",
		"-": "", "(empty)": "", "failed": "", "dn\xffs": "",
		strings.Repeat("x", 40): strings.Repeat("x", 40), strings.Repeat("x", 65): "",
		strings.Repeat("\xff", 40): "",
	} {
		if got := internService([]byte(in)); got != want {
			t.Errorf("internService(%q) = %q, want %q", in, got, want)
		}
	}
}
