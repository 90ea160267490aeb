package ingest

import (
	"time"

	"github.com/metaids/metaids/schemas"
)

// pmacctDecoder reads the JSON that pmacct's Kafka plugin writes for
// nfacctd, sfacctd and pmacctd: ip_src, ip_dst, port_src, port_dst, ip_proto
// (a lower-case name, or a number with ip_proto numeric output), bytes,
// packets, tcp_flags as a decimal string, and times as "seconds.micros"
// strings (timestamps_since_epoch) or "YYYY-MM-DD HH:MM:SS.micros" in
// DecoderConfig.TimeZone.
//
// The start time is the first of timestamp_start, timestamp_arrival (sfacctd
// and pmacctd aggregates carry only this), stamp_inserted and stamp_updated
// that is present and not zero; pmacctd writes timestamp_end "0.000000" for
// per-packet aggregates, which means "unset". Required: ip_src, ip_dst,
// ip_proto and one of those times. pmacct records are unidirectional.
//
// pmacct's purge markers (event_type purge_init, purge_close) are skipped.
type pmacctDecoder struct {
	loc *time.Location
}

func (d *pmacctDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	return decodeJSON(d, dst, rec, src)
}

func (d *pmacctDecoder) object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error) {
	s := jsonScanner{b: rec, i: i}
	if err := s.objBegin(); err != nil {
		return 0, nil, malformed(err)
	}
	var (
		start, end, arrival, inserted, updated int64
		haveSrc, haveDst, haveProto            bool
		nonFlow                                bool
	)
	for {
		key, v, done, err := s.member()
		if err != nil {
			return 0, nil, malformed(err)
		}
		if done {
			break
		}
		switch string(key) {
		case "event_type":
			et, _ := jString(v)
			nonFlow = string(et) != "purge" && string(et) != "" && v.kind != jsonNull
		case "ip_src":
			f.SrcAddr, haveSrc, err = jAddr(v, "ip_src")
		case "ip_dst":
			f.DstAddr, haveDst, err = jAddr(v, "ip_dst")
		case "port_src":
			f.SrcPort, _, err = jPort(v, "port_src")
		case "port_dst":
			f.DstPort, _, err = jPort(v, "port_dst")
		case "ip_proto":
			f.Proto, haveProto, err = jProto(v, "ip_proto")
		case "bytes":
			f.BytesOut, _, err = jCount(v, "bytes")
		case "packets":
			f.PktsOut, _, err = jCount(v, "packets")
		case "tcp_flags":
			f.TCPFlags, err = jFlags(v, "tcp_flags")
		case "timestamp_start":
			start, err = d.time(v, "timestamp_start")
		case "timestamp_end":
			end, err = d.time(v, "timestamp_end")
		case "timestamp_arrival":
			arrival, err = d.time(v, "timestamp_arrival")
		case "stamp_inserted":
			inserted, err = d.time(v, "stamp_inserted")
		case "stamp_updated":
			updated, err = d.time(v, "stamp_updated")
		}
		if err != nil {
			return 0, nil, err
		}
	}
	if nonFlow {
		return s.i, skipNonFlow, nil
	}
	switch {
	case !haveSrc:
		return 0, nil, missing("ip_src")
	case !haveDst:
		return 0, nil, missing("ip_dst")
	case !haveProto:
		return 0, nil, missing("ip_proto")
	}
	for _, t := range [...]int64{arrival, inserted, updated} {
		if start == 0 {
			start = t
		}
	}
	if start == 0 {
		return 0, nil, missing("timestamp_start")
	}
	if end == 0 {
		end = start
	}
	f.StartNs, f.EndNs = start, end
	return s.i, nil, nil
}

// time reads a pmacct timestamp: epoch "seconds.micros" or a local date.
// Zero means unset.
func (d *pmacctDecoder) time(v jsonVal, field string) (int64, error) {
	if v.kind == jsonNull {
		return 0, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, recErr(ReasonMalformed, field, errNotTime)
	}
	var (
		ns  int64
		err error
	)
	if len(b) > 4 && b[4] == '-' {
		ns, err = parseISOTime(b, d.loc)
	} else {
		ns, err = parseEpoch(b, 1e9)
	}
	if err != nil {
		return 0, timeErr(field, err)
	}
	return ns, nil
}
