package schemas

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"testing"
)

func benchFlows(b *testing.B) map[string]Flow {
	b.Helper()
	v4 := sampleFlow()
	v6 := sampleFlow()
	v6.SrcAddr = netip.MustParseAddr("2001:db8:85a3::8a2e:370:7334")
	v6.DstAddr = netip.MustParseAddr("2001:db8::80")
	return map[string]Flow{"ipv4": v4, "ipv6": v6}
}

func BenchmarkAppendFlow(b *testing.B) {
	c := newCodecs(b)
	for name, f := range benchFlows(b) {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				var err error
				if buf, err = c.AppendFlow(buf[:0], &f); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

func BenchmarkDecodeFlow(b *testing.B) {
	c := newCodecs(b)
	for name, f := range benchFlows(b) {
		b.Run(name, func(b *testing.B) {
			rec, err := c.AppendFlow(nil, &f)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(rec)))
			n := 0
			for b.Loop() {
				if _, err := c.DecodeFlow(rec); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

// BenchmarkVerifyModelUpdate shows what verification costs next to the
// update's size, including compiling the schema on each call.
func BenchmarkVerifyModelUpdate(b *testing.B) {
	pub, priv := testKey(1)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	for _, hidden := range []int32{0, 64, 256} {
		b.Run(fmt.Sprintf("hidden=%d", hidden), func(b *testing.B) {
			u := sampleModel()
			if hidden > 0 {
				u.Tensors = []Tensor{{Name: "lstm.w", Rows: 4 * hidden, Cols: hidden + 32, Data: make([]float32, 4*hidden*(hidden+32))}}
			}
			if err := SignModelUpdate(&u, KeyID(pub), priv); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := VerifyModelUpdate(&u, keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
