package features

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// ScoresVersion is the version of the scores schema.
const ScoresVersion = 1

// Columns of the scores schema.
const (
	scoreFlowID = iota
	scoreHost
	scoreTimeNs
	scoreAnomaly
	scoreModelVersion
	scoreClassProbs
	scoreEmbedding
	numScoreCols
)

// maxClasses bounds the class count a scores batch may declare, so that a
// hostile schema cannot make the reader allocate class names without end.
const maxClasses = 4096

// Score is one scored flow, a row of the scores topic.
type Score struct {
	FlowID       uint64
	Host         string
	TimeNs       int64   // the flow's end, ns since the Unix epoch
	Anomaly      float32 // next-flow prediction error
	ModelVersion int64
	Probs        []float32 // class probabilities, in ScoresBuilder's class order
	Embedding    []float32 // the classifier's input: hidden state, then features
}

// ScoresSchema returns the Arrow schema of a scores batch for a model with
// the given class names and embedding width: flow_id (uint64), host (utf8),
// time_ns (int64), anomaly (float32), model_version (int64), class_probs
// (fixed_size_list<float32>[len(classes)]) and embedding
// (fixed_size_list<float32>[embedDim]). The metadata holds the class names
// as a JSON array (MetaScoresClasses), ScoresVersion and the feature spec
// hash, since the embedding ends with the feature vector.
func ScoresSchema(classes []string, embedDim int) (*arrow.Schema, error) {
	if len(classes) < 1 || len(classes) > maxClasses {
		return nil, fmt.Errorf("%w: %d classes, want 1 to %d", ErrShape, len(classes), maxClasses)
	}
	if embedDim < 1 || embedDim > 1<<20 {
		return nil, fmt.Errorf("%w: embedding width %d, want 1 to %d", ErrShape, embedDim, 1<<20)
	}
	names, err := json.Marshal(classes)
	if err != nil {
		return nil, fmt.Errorf("scores schema: %w", err)
	}
	md := arrow.NewMetadata(
		[]string{MetaScoresVersion, MetaScoresClasses, MetaSpecHash},
		[]string{strconv.Itoa(ScoresVersion), string(names), Default().Hash()},
	)
	return arrow.NewSchema([]arrow.Field{
		scoreFlowID:       {Name: "flow_id", Type: arrow.PrimitiveTypes.Uint64},
		scoreHost:         {Name: "host", Type: arrow.BinaryTypes.String},
		scoreTimeNs:       {Name: "time_ns", Type: arrow.PrimitiveTypes.Int64},
		scoreAnomaly:      {Name: "anomaly", Type: arrow.PrimitiveTypes.Float32},
		scoreModelVersion: {Name: "model_version", Type: arrow.PrimitiveTypes.Int64},
		scoreClassProbs:   {Name: "class_probs", Type: arrow.FixedSizeListOf(int32(len(classes)), arrow.PrimitiveTypes.Float32)},
		scoreEmbedding:    {Name: "embedding", Type: arrow.FixedSizeListOf(int32(embedDim), arrow.PrimitiveTypes.Float32)},
	}, &md), nil
}

// ScoresBuilder accumulates scores into one record batch. It is not safe for
// concurrent use. Release it when done.
type ScoresBuilder struct {
	rb       *array.RecordBuilder
	classes  []string
	embedDim int
	flowID   *array.Uint64Builder
	host     *array.StringBuilder
	timeNs   *array.Int64Builder
	anomaly  *array.Float32Builder
	version  *array.Int64Builder
	probs    *array.FixedSizeListBuilder
	probVals *array.Float32Builder
	emb      *array.FixedSizeListBuilder
	embVals  *array.Float32Builder
	n        int
}

// NewScoresBuilder returns a builder for the model's classes and embedding
// width (see ScoresSchema).
func NewScoresBuilder(mem memory.Allocator, classes []string, embedDim int) (*ScoresBuilder, error) {
	schema, err := ScoresSchema(classes, embedDim)
	if err != nil {
		return nil, err
	}
	rb := array.NewRecordBuilder(mem, schema)
	probs := rb.Field(scoreClassProbs).(*array.FixedSizeListBuilder)
	emb := rb.Field(scoreEmbedding).(*array.FixedSizeListBuilder)
	return &ScoresBuilder{
		rb:       rb,
		classes:  append([]string(nil), classes...),
		embedDim: embedDim,
		flowID:   rb.Field(scoreFlowID).(*array.Uint64Builder),
		host:     rb.Field(scoreHost).(*array.StringBuilder),
		timeNs:   rb.Field(scoreTimeNs).(*array.Int64Builder),
		anomaly:  rb.Field(scoreAnomaly).(*array.Float32Builder),
		version:  rb.Field(scoreModelVersion).(*array.Int64Builder),
		probs:    probs,
		probVals: probs.ValueBuilder().(*array.Float32Builder),
		emb:      emb,
		embVals:  emb.ValueBuilder().(*array.Float32Builder),
	}, nil
}

// Append adds s as one row. It adds nothing and returns ErrShape when
// s.Probs or s.Embedding has the wrong length, and ErrNonFinite when a score
// is NaN or infinite: DecodeScores would refuse the whole batch for it.
func (b *ScoresBuilder) Append(s *Score) error {
	if len(s.Probs) != len(b.classes) {
		return fmt.Errorf("%w: %d class probabilities, want %d", ErrShape, len(s.Probs), len(b.classes))
	}
	if len(s.Embedding) != b.embedDim {
		return fmt.Errorf("%w: embedding of %d, want %d", ErrShape, len(s.Embedding), b.embedDim)
	}
	if firstNonFinite([]float32{s.Anomaly}) >= 0 || firstNonFinite(s.Probs) >= 0 || firstNonFinite(s.Embedding) >= 0 {
		return fmt.Errorf("%w: score of flow %016x", ErrNonFinite, s.FlowID)
	}
	b.flowID.Append(s.FlowID)
	b.host.Append(s.Host)
	b.timeNs.Append(s.TimeNs)
	b.anomaly.Append(s.Anomaly)
	b.version.Append(s.ModelVersion)
	b.probs.Append(true)
	b.probVals.AppendValues(s.Probs, nil)
	b.emb.Append(true)
	b.embVals.AppendValues(s.Embedding, nil)
	b.n++
	return nil
}

// Len returns the number of rows appended since the last NewRecord.
func (b *ScoresBuilder) Len() int { return b.n }

// Schema returns the builder's schema.
func (b *ScoresBuilder) Schema() *arrow.Schema { return b.rb.Schema() }

// NewRecord returns the rows appended so far and resets the builder. The
// caller owns the record and must Release it.
func (b *ScoresBuilder) NewRecord() arrow.Record {
	b.n = 0
	return b.rb.NewRecord()
}

// Release frees the builder's buffers.
func (b *ScoresBuilder) Release() { b.rb.Release() }

// ScoresView is a decoded scores batch. Like View, it aliases the bytes
// given to DecodeScores.
type ScoresView struct {
	rec      arrow.Record
	copied   *memory.Buffer
	classes  []string
	embedDim int
	specHash string
	flowID   []uint64
	host     *array.String
	timeNs   []int64
	anomaly  []float32
	version  []int64
	probs    []float32 // row-major, len(classes) per row
	emb      []float32 // row-major, embedDim per row
}

// DecodeScores reads a scores batch written by Encode from a ScoresBuilder
// record. Like Decode, it treats b as untrusted and returns errors wrapping
// ErrCorrupt (also for a NaN or infinite score) or ErrSchemaMismatch, never
// panicking. It does not check the
// feature spec hash, which the adapter compares with its model's
// (ScoresView.SpecHash).
func DecodeScores(b []byte, mem memory.Allocator) (v *ScoresView, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("decode scores: %w: internal error: %v", ErrCorrupt, r)
		}
	}()
	b, copied := alignedInput(b, mem)
	v, err = decodeScores(b)
	if err != nil {
		if copied != nil {
			copied.Release()
		}
		return nil, fmt.Errorf("decode scores: %w", err)
	}
	v.copied = copied
	return v, nil
}

func decodeScores(b []byte) (*ScoresView, error) {
	sch, batch, err := readIPC(b, numScoreCols)
	if err != nil {
		return nil, err
	}
	if got := sch.meta[MetaScoresVersion]; got != strconv.Itoa(ScoresVersion) {
		return nil, fmt.Errorf("%w: scores version %q, want %d", ErrSchemaMismatch, got, ScoresVersion)
	}
	var classes []string
	if err := json.Unmarshal([]byte(sch.meta[MetaScoresClasses]), &classes); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSchemaMismatch, MetaScoresClasses, err)
	}
	// The widths come from the stream's own list types; ScoresSchema then
	// checks them and the columns are compared with what it builds.
	embedDim := 0
	if t, ok := sch.fields[scoreEmbedding].typ.(*arrow.FixedSizeListType); ok {
		embedDim = int(t.Len())
	}
	want, err := ScoresSchema(classes, embedDim)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchemaMismatch, err)
	}
	if err := checkColumns(sch, want); err != nil {
		return nil, err
	}
	rec, err := loadRecord(batch, want)
	if err != nil {
		return nil, err
	}
	probs := rec.Column(scoreClassProbs).(*array.FixedSizeList).ListValues().(*array.Float32)
	emb := rec.Column(scoreEmbedding).(*array.FixedSizeList).ListValues().(*array.Float32)
	// The adapter trains on these; one NaN would poison a fine-tuning run.
	for _, c := range []struct {
		name string
		vals []float32
	}{
		{"anomaly", rec.Column(scoreAnomaly).(*array.Float32).Float32Values()},
		{"class_probs", probs.Float32Values()},
		{"embedding", emb.Float32Values()},
	} {
		if i := firstNonFinite(c.vals); i >= 0 {
			rec.Release()
			return nil, fmt.Errorf("%w: %w: %s value %d is %v", ErrCorrupt, ErrNonFinite, c.name, i, c.vals[i])
		}
	}
	return &ScoresView{
		rec:      rec,
		classes:  classes,
		embedDim: embedDim,
		specHash: sch.meta[MetaSpecHash],
		flowID:   rec.Column(scoreFlowID).(*array.Uint64).Uint64Values(),
		host:     rec.Column(scoreHost).(*array.String),
		timeNs:   rec.Column(scoreTimeNs).(*array.Int64).Int64Values(),
		anomaly:  rec.Column(scoreAnomaly).(*array.Float32).Float32Values(),
		version:  rec.Column(scoreModelVersion).(*array.Int64).Int64Values(),
		probs:    probs.Float32Values(),
		emb:      emb.Float32Values(),
	}, nil
}

// Len returns the number of rows.
func (v *ScoresView) Len() int { return len(v.flowID) }

// Classes returns the class names, in probability order.
func (v *ScoresView) Classes() []string { return append([]string(nil), v.classes...) }

// EmbedDim returns the embedding width.
func (v *ScoresView) EmbedDim() int { return v.embedDim }

// SpecHash returns the feature spec hash the scorer's model was built on.
func (v *ScoresView) SpecHash() string { return v.specHash }

// FlowID returns row i's flow id.
func (v *ScoresView) FlowID(i int) uint64 { return v.flowID[i] }

// Host returns row i's host key; the string aliases the batch.
func (v *ScoresView) Host(i int) string { return v.host.Value(i) }

// TimeNs returns row i's flow end time.
func (v *ScoresView) TimeNs(i int) int64 { return v.timeNs[i] }

// Anomaly returns row i's anomaly score.
func (v *ScoresView) Anomaly(i int) float32 { return v.anomaly[i] }

// ModelVersion returns the version of the model that scored row i.
func (v *ScoresView) ModelVersion(i int) int64 { return v.version[i] }

// Probs returns row i's class probabilities without copying.
func (v *ScoresView) Probs(i int) []float32 {
	c := len(v.classes)
	return v.probs[i*c : (i+1)*c : (i+1)*c]
}

// Embedding returns row i's embedding without copying.
func (v *ScoresView) Embedding(i int) []float32 {
	return v.emb[i*v.embedDim : (i+1)*v.embedDim : (i+1)*v.embedDim]
}

// Record returns the batch as an Arrow record, valid until Release.
func (v *ScoresView) Record() arrow.Record { return v.rec }

// Release frees the view.
func (v *ScoresView) Release() {
	if v.rec != nil {
		v.rec.Release()
		v.rec = nil
	}
	if v.copied != nil {
		v.copied.Release()
		v.copied = nil
	}
}
