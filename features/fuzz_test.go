package features

import (
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

// FuzzDecode feeds arbitrary bytes to Decode and DecodeScores. The property:
// no panic (the recover inside would report "internal error"), either a
// view or an error of this package, every view's accessors in range, and
// no memory left allocated afterwards.
func FuzzDecode(f *testing.F) {
	f.Add(encodeFlows(f, memory.DefaultAllocator, randomFlows(10, 3)))
	f.Add(encodeFlows(f, memory.DefaultAllocator, randomFlows(11, 0)))
	f.Add(scoresSeed(f))
	f.Add([]byte{})
	f.Add([]byte("\xff\xff\xff\xff\x10\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		v, err := Decode(b, mem)
		checkFuzzErr(t, err)
		if err == nil {
			for i := range v.Len() {
				_ = v.Host(i) + v.Peer(i)
				_ = v.Vector(nil, i)
				_, _, _, _, _ = v.FlowID(i), v.SrcPort(i), v.DstPort(i), v.StartNs(i), v.EndNs(i)
			}
			v.Release()
		}
		s, err := DecodeScores(b, mem)
		checkFuzzErr(t, err)
		if err == nil {
			for i := range s.Len() {
				_ = s.Host(i)
				_, _ = s.Probs(i), s.Embedding(i)
			}
			s.Release()
		}
	})
}

func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), "internal error") {
		t.Fatalf("decoder panicked: %v", err)
	}
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchemaMismatch) && !errors.Is(err, ErrSpecMismatch) {
		t.Fatalf("error %v wraps none of this package's sentinels", err)
	}
}

func scoresSeed(tb testing.TB) []byte {
	b, err := NewScoresBuilder(memory.DefaultAllocator, []string{"benign", "scan"}, 3)
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Release()
	for i := range 3 {
		if err := b.Append(&Score{FlowID: uint64(i), Host: "h", Probs: []float32{0.5, 0.5}, Embedding: []float32{1, 2, 3}}); err != nil {
			tb.Fatal(err)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	out, err := Encode(nil, rec)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
