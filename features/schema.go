package features

import (
	"strconv"
	"sync"

	"github.com/apache/arrow/go/v15/arrow"
)

// Schema metadata keys. Features batches carry the spec's hash and version;
// scores batches carry their own version, the class names and the hash of
// the feature spec that the embedding's feature part follows.
const (
	MetaSpecHash      = "metaids.features.hash"
	MetaSpecVersion   = "metaids.features.version"
	MetaScoresVersion = "metaids.scores.version"
	MetaScoresClasses = "metaids.scores.classes"
)

// Identity columns of the features schema, before the NumFeatures float32
// feature columns. They say which flow a row is, so the scorer can key state
// and alerts; none of them is ever a model input (address identity would
// let a model memorise hosts instead of learning behaviour).
const (
	colFlowID = iota
	colHost
	colPeer
	colSrcPort
	colDstPort
	colProto
	colStartNs
	colEndNs
	numIdentityCols
)

// FirstFeatureColumn is the column index of feature 0 in the features
// schema; feature j is column FirstFeatureColumn+j.
const FirstFeatureColumn = 8

var _ = [1]struct{}{}[FirstFeatureColumn-numIdentityCols] // fails to compile if they differ

var identityFields = [numIdentityCols]arrow.Field{
	colFlowID:  {Name: "flow_id", Type: arrow.PrimitiveTypes.Uint64},
	colHost:    {Name: "host", Type: arrow.BinaryTypes.String},
	colPeer:    {Name: "peer", Type: arrow.BinaryTypes.String},
	colSrcPort: {Name: "src_port", Type: arrow.PrimitiveTypes.Uint16},
	colDstPort: {Name: "dst_port", Type: arrow.PrimitiveTypes.Uint16},
	colProto:   {Name: "proto", Type: arrow.PrimitiveTypes.Uint8},
	colStartNs: {Name: "start_ns", Type: arrow.PrimitiveTypes.Int64},
	colEndNs:   {Name: "end_ns", Type: arrow.PrimitiveTypes.Int64},
}

// featuresSchema is built once and shared: an *arrow.Schema is read-only.
var featuresSchema = sync.OnceValue(func() *arrow.Schema {
	spec := Default()
	fields := make([]arrow.Field, 0, numIdentityCols+spec.Len())
	fields = append(fields, identityFields[:]...)
	for j := range spec.Len() {
		fields = append(fields, arrow.Field{Name: spec.Feature(j).Name, Type: arrow.PrimitiveTypes.Float32})
	}
	md := arrow.NewMetadata(
		[]string{MetaSpecHash, MetaSpecVersion},
		[]string{spec.Hash(), strconv.Itoa(spec.Version())},
	)
	return arrow.NewSchema(fields, &md)
})

// Schema returns the Arrow schema of a features batch: the identity columns
// flow_id (uint64), host and peer (utf8), src_port and dst_port (uint16),
// proto (uint8), start_ns and end_ns (int64), then one non-nullable float32
// column per feature of Default, named by the spec. Its metadata holds the
// spec hash (MetaSpecHash) and version (MetaSpecVersion).
func Schema() *arrow.Schema { return featuresSchema() }
