package features

import (
	"net/netip"

	"github.com/metaids/metaids/schemas"
)

// Host returns f's host key: the originator's address in canonical form.
// The scorer keeps one LSTM state per host key, and the key picks the
// features partition. Hot paths use AppendHost, which does not allocate.
func Host(f *schemas.Flow) string { return string(AppendHost(nil, f)) }

// AppendHost appends f's host key to dst. The address is unmapped and its
// zone dropped, so "::ffff:10.0.0.1" from one shipper and "10.0.0.1" from
// another are the same host, in the same partition, with one state.
func AppendHost(dst []byte, f *schemas.Flow) []byte { return appendAddr(dst, f.SrcAddr) }

// AppendPeer appends f's responder address to dst, canonicalised as
// AppendHost does.
func AppendPeer(dst []byte, f *schemas.Flow) []byte { return appendAddr(dst, f.DstAddr) }

func appendAddr(dst []byte, a netip.Addr) []byte {
	return a.Unmap().WithZone("").AppendTo(dst)
}

// Partition returns the partition of n that Kafka's default partitioner
// assigns to key: murmur2(key) with the sign bit cleared, mod n. It agrees
// with the Java client, librdkafka's "murmur2" partitioners and
// kafka.Murmur2Balancer for every non-nil key, so any producer of the
// features topic puts a host where the scorer expects it. n must be
// positive; Partition returns 0 otherwise rather than dividing by zero.
func Partition[K ~string | ~[]byte](key K, n int) int {
	if n <= 0 {
		return 0
	}
	return int((murmur2(key) & 0x7fffffff) % uint32(n))
}

// murmur2 is Kafka's variant of MurmurHash2 (seed 0x9747b28c), ported from
// org.apache.kafka.common.utils.Utils.murmur2. Generic over string and
// []byte so that neither caller converts, which would allocate.
func murmur2[K ~string | ~[]byte](data K) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	i := 0
	for ; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch length - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
