package ingest

import (
	"errors"

	"github.com/metaids/metaids/schemas"
)

// avroDecoder reads flows that are already in metaids' own form: an Avro
// schemas.Flow with Confluent framing (magic byte 0, 4-byte schema id), as
// written by schemas.Codecs.AppendFlow — for producers that normalise at the
// edge. Framing, schema id and body problems are bad_schema; a body that
// decodes but breaks Flow's rules (an address that does not parse, a port
// above 65535) is malformed.
//
// The flow's own source coordinates are replaced by the input record's, as
// for every other format, so that flow ids stay deterministic in the
// coordinates ingest read the record at.
type avroDecoder struct {
	codecs *schemas.Codecs
}

func (d *avroDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	f, err := d.codecs.DecodeFlow(rec)
	if err != nil {
		r := ReasonBadSchema
		if errors.Is(err, schemas.ErrInvalid) {
			r = ReasonMalformed
		}
		return dst, recErr(r, "", err)
	}
	// As every text decoder does (parseAddr): an IPv4-mapped address is
	// the IPv4 host it maps, so that a host has one key whatever format
	// carried it, and a zone names an interface of the exporter, not
	// part of the host.
	f.SrcAddr, f.DstAddr = f.SrcAddr.Unmap().WithZone(""), f.DstAddr.Unmap().WithZone("")
	f.Source = src
	f.Source.Index = 0
	return append(dst, f), nil
}
