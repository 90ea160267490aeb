package features_test

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

// Example follows one flow through the pipeline: ingest batches it for its
// host's partition and encodes the batch as a Kafka message value; the
// scorer decodes it, reads the features in place and fills dt_prev.
func Example() {
	mem := memory.NewGoAllocator()

	// Ingest: route and batch. The partition count is the features topic's.
	b, err := features.NewBatcher(mem, features.DefaultConfig(), 12)
	if err != nil {
		panic(err)
	}
	defer b.Release()
	now := time.Unix(1_700_000_000, 0)
	flow := schemas.Flow{
		StartNs: now.UnixNano(), EndNs: now.UnixNano() + 2_000_000,
		SrcAddr: netip.MustParseAddr("10.0.0.9"), DstAddr: netip.MustParseAddr("10.0.1.20"),
		SrcPort: 51000, DstPort: 445, Proto: 6, BytesOut: 120, PktsOut: 2, TCPFlags: 0x02,
		Source: schemas.Coord{Topic: "flows.goflow2", Partition: 0, Offset: 42},
	}
	out, _ := b.Add(nil, &flow, now)
	out, _ = b.FlushExpired(out, now.Add(50*time.Millisecond)) // the linger has passed
	msg := out[0]
	fmt.Printf("partition %d key %s rows %d covers %+v\n", msg.Partition, msg.Key, msg.Rows, msg.Spans)

	// Scorer: decode without copying and read the vector.
	v, err := features.Decode(msg.Value, mem)
	if err != nil {
		panic(err)
	}
	defer v.Release()
	spec := features.Default()
	vec := v.Vector(nil, 0)
	prevStart := v.StartNs(0) - 3*int64(time.Second) // from the scorer's per-host state
	vec[features.IdxDeltaT] = features.DeltaTBetween(prevStart, v.StartNs(0))
	var shown []string
	for _, name := range []string{"proto_tcp", "dst_svc_smb_rpc", "tcp_syn", "no_response", "src_internal", "dt_prev"} {
		j, _ := spec.Index(name)
		shown = append(shown, fmt.Sprintf("%s=%.3f", name, vec[j]))
	}
	fmt.Println(strings.Join(shown, " "))
	fmt.Println(v.Host(0), v.Peer(0), v.DstPort(0), v.Feature(0)[0] == vec[0])
	// Output:
	// partition 2 key 10.0.0.9 rows 1 covers [{Topic:flows.goflow2 Partition:0 FirstOffset:42 LastOffset:42}]
	// proto_tcp=1.000 dst_svc_smb_rpc=1.000 tcp_syn=1.000 no_response=1.000 src_internal=1.000 dt_prev=1.386
	// 10.0.0.9 10.0.1.20 445 true
}
