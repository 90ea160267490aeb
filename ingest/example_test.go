package ingest_test

import (
	"fmt"
	"time"

	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/schemas"
)

// A stage decodes each record with the decoder for its topic, validates the
// flows, and counts the outcome; skips and dead letters carry a reason.
func ExampleNewDecoders() {
	cfg := ingest.DefaultDecoderConfig()
	decoders, err := ingest.NewDecoders(cfg, nil)
	if err != nil {
		panic(err)
	}
	now := func() time.Time { return time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC) }
	validator, err := ingest.NewValidator(ingest.DefaultValidatorConfig(), now)
	if err != nil {
		panic(err)
	}
	records := []string{
		"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
		"2 123456789010 eni-0f1e2d3c4b5a69788 10.1.2.3 93.184.216.34 51514 443 6 640 59711 1795334460 1795334519 ACCEPT OK",
		"2 123456789010 eni-0f1e2d3c4b5a69788 10.1.2.3 93.184.216.34 51514 99999 6 640 59711 1795334460 1795334519 ACCEPT OK",
		"2 123456789010 eni-0f1e2d3c4b5a69788 - - - - - - - 1795334600 1795334660 - NODATA",
	}
	topic := "flows.vpc"
	dec := decoders[cfg.FormatFor(topic)]
	var flows []schemas.Flow // reused across records
	for offset, rec := range records {
		src := schemas.Coord{Topic: topic, Partition: 0, Offset: int64(offset)}
		flows, err = dec.Decode(flows[:0], []byte(rec), src)
		if err == nil {
			err = validator.Check(flows)
		}
		outcome, reason := ingest.Outcome(err)
		fmt.Println(offset, outcome, reason, len(flows))
	}
	// Output:
	// 0 skipped header 0
	// 1 ok  1
	// 2 dead_lettered bad_port 0
	// 3 skipped no_data 0
}
