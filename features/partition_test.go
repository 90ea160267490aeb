package features

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/schemas"
)

// TestMurmur2Kafka checks murmur2 against the values in Apache Kafka's
// UtilsTest.testMurmur2 (clients/src/test/java/.../utils/UtilsTest.java).
func TestMurmur2Kafka(t *testing.T) {
	tests := []struct {
		key  string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, tc := range tests {
		if got := int32(murmur2(tc.key)); got != tc.want {
			t.Errorf("murmur2(%q) = %d, want %d", tc.key, got, tc.want)
		}
		if got := int32(murmur2([]byte(tc.key))); got != tc.want {
			t.Errorf("murmur2([]byte(%q)) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

// TestPartitionMatchesKafkaGo compares Partition with kafka-go's
// Murmur2Balancer, which ingest's writer uses, over random keys of every
// length up to 64 and many partition counts.
func TestPartitionMatchesKafkaGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 0))
	counts := []int{1, 2, 3, 4, 7, 8, 12, 16, 31, 64, 100, 127, 1000}
	parts := make([]int, 1000)
	for i := range parts {
		parts[i] = i
	}
	var keys [][]byte
	keys = append(keys, []byte{})
	for range 3000 {
		k := make([]byte, rng.IntN(65))
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		keys = append(keys, k)
	}
	for _, s := range []string{"10.0.0.1", "192.168.100.200", "2001:db8::1", "fe80::1", "::"} {
		keys = append(keys, []byte(s))
	}
	var bal kafka.Murmur2Balancer
	for _, n := range counts {
		for _, k := range keys {
			want := bal.Balance(kafka.Message{Key: k}, parts[:n]...)
			if got := Partition(k, n); got != want {
				t.Fatalf("Partition(%x, %d) = %d, kafka.Murmur2Balancer = %d", k, n, got, want)
			}
			if got := Partition(string(k), n); got != want {
				t.Fatalf("Partition(string %x, %d) = %d, kafka.Murmur2Balancer = %d", k, n, got, want)
			}
		}
	}
	if got := Partition("x", 0); got != 0 {
		t.Errorf("Partition(x, 0) = %d, want 0", got)
	}
}

func TestHost(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"10.0.0.1", "10.0.0.1"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"fe80::1%eth0", "fe80::1"},
		{"2001:DB8::0:1", "2001:db8::1"},
	}
	for _, tc := range tests {
		f := schemas.Flow{SrcAddr: netip.MustParseAddr(tc.src), DstAddr: netip.MustParseAddr(tc.src)}
		if got := Host(&f); got != tc.want {
			t.Errorf("Host(%s) = %q, want %q", tc.src, got, tc.want)
		}
		if got := string(AppendPeer([]byte("x"), &f)); got != "x"+tc.want {
			t.Errorf("AppendPeer(x, %s) = %q, want %q", tc.src, got, "x"+tc.want)
		}
	}
	f := scanFlow()
	buf := make([]byte, 0, 64)
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendHost(buf[:0], &f) }); allocs != 0 {
		t.Errorf("AppendHost allocated %v times, want 0", allocs)
	}
}

// TestHostSamePartition checks that every flow of a host maps to one
// partition, whatever else differs and whichever form its address takes.
func TestHostSamePartition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 0))
	for h := range 200 {
		v4 := netip.AddrFrom4([4]byte{10, byte(h), byte(h >> 8), 1})
		forms := []netip.Addr{v4, netip.AddrFrom16(v4.As16())} // plain and IPv4-mapped
		for _, n := range []int{1, 6, 32} {
			want := -1
			for i := range 50 {
				f := schemas.Flow{
					SrcAddr: forms[i%2], DstAddr: netip.AddrFrom4([4]byte{8, 8, byte(rng.Uint32()), byte(rng.Uint32())}),
					SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32()), Proto: 6,
				}
				got := Partition(AppendHost(nil, &f), n)
				if want == -1 {
					want = got
				}
				if got != want {
					t.Fatalf("host %s flow %d: partition %d of %d, earlier flows %d", v4, i, got, n, want)
				}
			}
		}
	}
}

func ExamplePartition() {
	f := schemas.Flow{SrcAddr: netip.MustParseAddr("10.0.0.9")}
	fmt.Println(Host(&f), Partition(Host(&f), 12))
	// Output: 10.0.0.9 2
}
