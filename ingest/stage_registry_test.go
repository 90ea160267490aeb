package ingest

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/schemas/schematest"
)

// TestStageSchemaRegistry runs the stage with -schema-registry.url against
// an in-test registry: it registers the schemas at start, decodes Avro
// flows framed with the registry's ids, dead-letters a record framed with
// an id the registry does not know, and frames its dead letters with the
// registry's id, so a consumer resolving ids there can read them.
func TestStageSchemaRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker, a registry and the stage")
	}
	sr := schematest.NewRegistry()
	// Ids far from the fixed table's, so a stage that ignored the
	// registry could not pass by accident.
	sr.SetNextID(4000)
	srv := schematest.Start(t, sr)

	e := startBroker(t, 1, "flows.avro")
	cfg := testConfig(t, e, map[string]string{"flows.avro": FormatAvro})
	cfg.SchemaRegistry.URL = srv.URL
	cfg.SchemaRegistry.Timeout = 2 * time.Second
	s := startStage(t, cfg, nil)
	if n := sr.Count("POST subjects"); n < len(schemas.Subjects()) {
		t.Fatalf("the stage made %d registrations, want one per subject (%d)", n, len(schemas.Subjects()))
	}

	// A producer of the same registry, as a normalising shipper would be.
	reg, err := schemas.NewHTTPRegistry(cfg.SchemaRegistry)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	codecs, err := schemas.NewCodecs(reg)
	if err != nil {
		t.Fatal(err)
	}
	flowID, err := reg.IDFor(schemas.SubjectFlow)
	if err != nil || flowID < 4000 {
		t.Fatalf("registry id of %s = %d, %v; want one the registry assigned (>= 4000)", schemas.SubjectFlow, flowID, err)
	}
	const good = 20
	var values [][]byte
	for i := range good {
		start := stageNow.Add(-10*time.Minute + time.Duration(i)*time.Second)
		f := schemas.Flow{
			StartNs: start.UnixNano(), EndNs: start.Add(time.Second).UnixNano(),
			SrcAddr: netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i%4)}), DstAddr: netip.MustParseAddr("198.51.100.7"),
			SrcPort: uint16(40000 + i), DstPort: 443, Proto: 6, BytesOut: 700, BytesIn: 500, PktsOut: 4, PktsIn: 2,
		}
		b, err := codecs.AppendFlow(nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		if id, _, _ := schemas.SplitFrame(b); id != flowID {
			t.Fatalf("producer framed a flow with id %d, want the registry's %d", id, flowID)
		}
		values = append(values, b)
	}
	// The fixed table's id for a flow, which this registry never gave.
	stray := schemas.AppendHeader(nil, 1)
	stray = append(stray, values[0][5:]...)
	values = append(values, stray)
	produce(t, cfg.Config, "flows.avro", 0, nil, values...)

	c := waitHandled(t, s.Stage, "avro", len(values), 30*time.Second)
	if c.ok != good || c.dead != 1 {
		t.Errorf("counts = %+v, want %d ok and 1 dead-lettered", c, good)
	}
	if got := s.deadLetterReasons(); fmt.Sprint(got) != fmt.Sprint(map[string]float64{"bad_schema": 1}) {
		t.Errorf("dead letters by reason = %v, want bad_schema: 1", got)
	}
	rows := readFeatures(t, e.Addr(), cfg.Topic("features"), cfg.Ingest.Partitions)
	if len(rows) != good {
		t.Errorf("features topic holds %d rows, want %d", len(rows), good)
	}

	dlq := readTopic(t, e.Addr(), cfg.Topic("flows.dlq"))
	if len(dlq) != 1 {
		t.Fatalf("flows.dlq holds %d records, want 1", len(dlq))
	}
	dlID, err := reg.IDFor(schemas.SubjectDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := schemas.SplitFrame(dlq[0].Value); err != nil || id != dlID {
		t.Errorf("dead letter framed with id %d (%v), want the registry's %d", id, err, dlID)
	}
	d, err := codecs.DecodeDeadLetter(dlq[0].Value)
	if err != nil {
		t.Fatalf("dead letter does not decode with the registry's schemas: %v", err)
	}
	if d.Reason != "bad_schema" || d.Offset != int64(good) {
		t.Errorf("dead letter = {reason %q, offset %d}, want bad_schema at offset %d", d.Reason, d.Offset, good)
	}
}
