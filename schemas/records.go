package schemas

// The Go forms of the Avro records in *.avsc. Codecs in this package convert
// between these and the Confluent-framed Avro bytes on the topics.

// Verdict values on a Label other than a family name.
const VerdictBenign = "benign"

// TargetKind says what a Label's TargetID names.
type TargetKind string

// Label target kinds.
const (
	TargetFlow  TargetKind = "FLOW"
	TargetAlert TargetKind = "ALERT"
)

// Label is an analyst's verdict on one flow or alert, read by the adapter.
type Label struct {
	TargetID   string     // flow id or alert id (16 hex digits)
	TargetKind TargetKind // FLOW or ALERT
	Verdict    string     // VerdictBenign or an attack family name
	Analyst    string
	Reason     string
	TimeNs     int64
}

// Contribution is one feature's share in an alert's score, so an analyst sees
// why the alert fired.
type Contribution struct {
	Feature string
	Value   float32
}

// Alert is one detection published on the alerts topic. Storms are
// aggregated: Count says how many flows of this host and class it covers
// between FirstNs and LastNs.
type Alert struct {
	AlertID      string // deterministic from the first flow id and class
	FlowID       string // the flow that opened the alert
	Host         string
	Peer         string
	SrcPort      int32
	DstPort      int32
	Proto        int32
	Class        string  // family name, or "anomaly" for anomaly-only alerts
	Probability  float32 // class probability
	AnomalyScore float32
	Severity     string // low | medium | high | critical
	FirstNs      int64
	LastNs       int64
	Count        int64
	ModelVersion int64
	Explanation  []Contribution
}

// Action is a block or rate-limit recommendation for a firewall or SOAR
// controller. Withdrawn is set when the host has calmed down.
type Action struct {
	ActionID     string
	Host         string
	Kind         string // block | rate_limit
	Reason       string
	DurationSec  int64
	AlertIDs     []string
	TimeNs       int64
	Withdrawn    bool
	ModelVersion int64
}

// DeadLetter carries an input record that could not be processed, with the
// reason, so nothing is dropped silently.
type DeadLetter struct {
	Reason    string // bounded set, also the metric label
	Error     string
	Stage     string
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	TimeNs    int64
}

// UpdateKind says whether a ModelUpdate carries the whole model or only the
// classifier head (the adapter's few-shot updates).
type UpdateKind string

// ModelUpdate kinds.
const (
	UpdateFull UpdateKind = "FULL"
	UpdateHead UpdateKind = "HEAD"
)

// Tensor is one named weight matrix, row-major, float32 little-endian.
type Tensor struct {
	Name string
	Rows int32
	Cols int32
	Data []float32
}

// Exemplar is a stored embedding of a labelled flow, replayed by the adapter
// so fine-tuning does not forget known classes.
type Exemplar struct {
	Class     int32
	Embedding []float32
}

// ModelUpdate is the signed record on the compacted models topic, keyed by
// model name. The signature covers the Avro encoding of the record with an
// empty Signature field.
type ModelUpdate struct {
	Name             string
	Version          int64
	ParentVersion    int64
	Kind             UpdateKind
	SpecHash         string
	Features         int32
	Hidden           int32
	CreatedNs        int64
	Classes          []string
	Thresholds       []float32 // per class; index 0 is benign and unused
	AnomalyThreshold float32
	NormMean         []float32
	NormStd          []float32
	Tensors          []Tensor
	Exemplars        []Exemplar
	Gate             map[string]float64 // the gate's numbers for adapter updates
	KeyID            string
	Signature        []byte
}
