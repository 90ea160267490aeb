package features

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

var testClasses = []string{"benign", "scan", "brute,force", `c2 "beacon"`}

func randomScores(seed uint64, n, embedDim int) []Score {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]Score, n)
	for i := range out {
		s := Score{
			FlowID: rng.Uint64(), Host: "10.0.0." + string(rune('0'+i%10)), TimeNs: t0 + int64(i),
			Anomaly: rng.Float32() * 10, ModelVersion: 7,
			Probs: make([]float32, len(testClasses)), Embedding: make([]float32, embedDim),
		}
		for j := range s.Probs {
			s.Probs[j] = rng.Float32()
		}
		for j := range s.Embedding {
			s.Embedding[j] = float32(rng.NormFloat64())
		}
		out[i] = s
	}
	return out
}

func encodeScores(t *testing.T, mem memory.Allocator, scores []Score, embedDim int) []byte {
	t.Helper()
	b, err := NewScoresBuilder(mem, testClasses, embedDim)
	if err != nil {
		t.Fatalf("NewScoresBuilder: %v", err)
	}
	defer b.Release()
	for i := range scores {
		if err := b.Append(&scores[i]); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if b.Len() != len(scores) {
		t.Errorf("Len() = %d, want %d", b.Len(), len(scores))
	}
	rec := b.NewRecord()
	defer rec.Release()
	out, err := Encode(nil, rec)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return out
}

func TestScoresRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 300} {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		const embedDim = 64 + NumFeatures
		scores := randomScores(uint64(n), n, embedDim)
		b := encodeScores(t, mem, scores, embedDim)
		v, err := DecodeScores(b, mem)
		if err != nil {
			t.Fatalf("DecodeScores(%d rows): %v", n, err)
		}
		if v.Len() != n || !slices.Equal(v.Classes(), testClasses) || v.EmbedDim() != embedDim || v.SpecHash() != Default().Hash() {
			t.Fatalf("DecodeScores: len %d classes %q dim %d hash %s, want %d %q %d %s",
				v.Len(), v.Classes(), v.EmbedDim(), v.SpecHash(), n, testClasses, embedDim, Default().Hash())
		}
		for i, s := range scores {
			if v.FlowID(i) != s.FlowID || v.Host(i) != s.Host || v.TimeNs(i) != s.TimeNs ||
				math.Float32bits(v.Anomaly(i)) != math.Float32bits(s.Anomaly) || v.ModelVersion(i) != s.ModelVersion {
				t.Fatalf("row %d = %x %s %d %v %d, want %+v", i, v.FlowID(i), v.Host(i), v.TimeNs(i), v.Anomaly(i), v.ModelVersion(i), s)
			}
			if !bitsEqual(v.Probs(i), s.Probs) || !bitsEqual(v.Embedding(i), s.Embedding) {
				t.Fatalf("row %d probs/embedding differ", i)
			}
		}
		v.Release()
		mem.AssertSize(t, 0)
	}
}

func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

func TestScoresBuilderShape(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b, err := NewScoresBuilder(mem, testClasses, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	tests := []struct {
		name string
		s    Score
	}{
		{"short probs", Score{Probs: make([]float32, 3), Embedding: make([]float32, 8)}},
		{"long embedding", Score{Probs: make([]float32, 4), Embedding: make([]float32, 9)}},
	}
	for _, tc := range tests {
		if err := b.Append(&tc.s); !errors.Is(err, ErrShape) {
			t.Errorf("%s: Append error = %v, want ErrShape", tc.name, err)
		}
	}
	if b.Len() != 0 {
		t.Errorf("Len() after rejected appends = %d, want 0", b.Len())
	}
	for _, bad := range []struct {
		classes []string
		dim     int
	}{{nil, 8}, {testClasses, 0}} {
		if _, err := NewScoresBuilder(mem, bad.classes, bad.dim); !errors.Is(err, ErrShape) {
			t.Errorf("NewScoresBuilder(%q, %d) error = %v, want ErrShape", bad.classes, bad.dim, err)
		}
	}
}

func TestDecodeScoresRejects(t *testing.T) {
	good, _ := ScoresSchema(testClasses, 8)
	change := func(f func(fields []arrow.Field, md map[string]string) []arrow.Field) *arrow.Schema {
		fields := append([]arrow.Field(nil), good.Fields()...)
		md := map[string]string{}
		for i, k := range good.Metadata().Keys() {
			md[k] = good.Metadata().Values()[i]
		}
		fields = f(fields, md)
		m := arrow.MetadataFrom(md)
		return arrow.NewSchema(fields, &m)
	}
	tests := []struct {
		name    string
		schema  *arrow.Schema
		wantMsg string
	}{
		{"features batch", Schema(), "44 columns, want 7"},
		{"class count disagrees", change(func(f []arrow.Field, md map[string]string) []arrow.Field {
			md[MetaScoresClasses] = `["benign"]`
			return f
		}), `"class_probs" has fixed_size_list<item: float32, nullable>[4], want fixed_size_list<item: float32, nullable>[1]`},
		{"classes not json", change(func(f []arrow.Field, md map[string]string) []arrow.Field {
			md[MetaScoresClasses] = `benign,scan`
			return f
		}), MetaScoresClasses},
		{"no version", change(func(f []arrow.Field, md map[string]string) []arrow.Field {
			delete(md, MetaScoresVersion)
			return f
		}), "scores version"},
		{"float64 embedding", change(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[scoreEmbedding].Type = arrow.FixedSizeListOf(8, arrow.PrimitiveTypes.Float64)
			return f
		}), `"embedding" has fixed_size_list<item: float64, nullable>[8]`},
		{"list embedding", change(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[scoreEmbedding].Type = arrow.ListOf(arrow.PrimitiveTypes.Float32)
			return f
		}), "embedding width 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			b := encodeWith(t, tc.schema, func(rb *array.RecordBuilder) {
				for _, fb := range rb.Fields() {
					fb.AppendEmptyValue()
				}
			})
			v, err := DecodeScores(b, mem)
			if err == nil {
				v.Release()
				t.Fatalf("DecodeScores = nil error, want ErrSchemaMismatch")
			}
			if !errors.Is(err, ErrSchemaMismatch) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("DecodeScores error = %v, want ErrSchemaMismatch containing %q", err, tc.wantMsg)
			}
		})
	}
	// A scores batch is not a features batch either.
	scores := encodeScores(t, memory.DefaultAllocator, randomScores(1, 2, 8), 8)
	if _, err := Decode(scores, memory.DefaultAllocator); !errors.Is(err, ErrSchemaMismatch) {
		t.Errorf("Decode(scores batch) error = %v, want ErrSchemaMismatch", err)
	}
}

func TestScoresNonFinite(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b, err := NewScoresBuilder(mem, testClasses, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	nan := float32(math.NaN())
	for _, s := range []Score{
		{Anomaly: nan, Probs: make([]float32, 4), Embedding: make([]float32, 2)},
		{Probs: []float32{0, 0, float32(math.Inf(1)), 0}, Embedding: make([]float32, 2)},
		{Probs: make([]float32, 4), Embedding: []float32{0, nan}},
	} {
		if err := b.Append(&s); !errors.Is(err, ErrNonFinite) {
			t.Errorf("Append(%+v) error = %v, want ErrNonFinite", s, err)
		}
	}
	// Written around the builder, a NaN must still not get through.
	schema, _ := ScoresSchema(testClasses, 2)
	msg := encodeWith(t, schema, func(rb *array.RecordBuilder) {
		for i, fb := range rb.Fields() {
			if i == scoreEmbedding {
				l := fb.(*array.FixedSizeListBuilder)
				l.Append(true)
				l.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1, nan}, nil)
				continue
			}
			fb.AppendEmptyValue()
		}
	})
	v, err := DecodeScores(msg, mem)
	if err == nil {
		v.Release()
		t.Fatalf("DecodeScores(NaN embedding) = nil error, want ErrNonFinite")
	}
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "embedding value 1") {
		t.Errorf("DecodeScores(NaN embedding) error = %v, want ErrNonFinite naming embedding value 1", err)
	}
}
