package schemas

import (
	"embed"
	"fmt"
)

//go:embed *.avsc
var avsc embed.FS

// Subjects of the records, as a Schema Registry using RecordNameStrategy names
// them. Subjects are record names rather than topic names because one record
// type travels on several prefixed topics.
const (
	SubjectFlow        = "io.metaids.Flow"
	SubjectAlert       = "io.metaids.Alert"
	SubjectLabel       = "io.metaids.Label"
	SubjectModelUpdate = "io.metaids.ModelUpdate"
	SubjectDeadLetter  = "io.metaids.DeadLetter"
	SubjectAction      = "io.metaids.Action"
)

// schemaFile ties a subject to its embedded file and its id in the fixed table.
type schemaFile struct {
	subject string
	file    string
	id      int32
}

// schemaFiles returns the fixed table in id order. It is a function, not a
// variable, so that nothing can change the table under a running codec.
func schemaFiles() [6]schemaFile {
	return [...]schemaFile{
		{SubjectFlow, "flow.avsc", 1},
		{SubjectAlert, "alert.avsc", 2},
		{SubjectLabel, "label.avsc", 3},
		{SubjectModelUpdate, "modelupdate.avsc", 4},
		{SubjectDeadLetter, "deadletter.avsc", 5},
		{SubjectAction, "action.avsc", 6},
	}
}

// Subjects returns the subjects of every record this package encodes, in the
// fixed table's id order.
func Subjects() []string {
	out := make([]string, len(schemaFiles()))
	for i, s := range schemaFiles() {
		out[i] = s.subject
	}
	return out
}

// Schema returns the embedded Avro schema (JSON) of a subject, for
// registering it with a Schema Registry.
func Schema(subject string) (string, error) {
	for _, s := range schemaFiles() {
		if s.subject == subject {
			b, err := avsc.ReadFile(s.file)
			if err != nil {
				return "", fmt.Errorf("read embedded schema %s: %w", s.file, err)
			}
			return string(b), nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrUnknownSubject, subject)
}

// Registry maps subjects to schema ids and ids to schemas. FixedRegistry is
// the built-in table; a Confluent Schema Registry client satisfies the same
// interface.
type Registry interface {
	// IDFor returns the id under which subject's schema is registered.
	IDFor(subject string) (int32, error)
	// SchemaFor returns the schema (JSON) registered under id.
	SchemaFor(id int32) (string, error)
}

// FixedRegistry is a Registry with ids fixed at build time: Flow=1, Alert=2,
// Label=3, ModelUpdate=4, DeadLetter=5, Action=6, and the embedded schemas.
// It lets a deployment run without a Schema Registry while staying
// byte-compatible with Confluent deserializers that have one.
type FixedRegistry struct {
	ids     map[string]int32
	schemas map[int32]string
}

// NewFixedRegistry returns the fixed table.
func NewFixedRegistry() (*FixedRegistry, error) {
	r := &FixedRegistry{ids: map[string]int32{}, schemas: map[int32]string{}}
	for _, s := range schemaFiles() {
		text, err := Schema(s.subject)
		if err != nil {
			return nil, err
		}
		r.ids[s.subject] = s.id
		r.schemas[s.id] = text
	}
	return r, nil
}

// IDFor implements Registry.
func (r *FixedRegistry) IDFor(subject string) (int32, error) {
	id, ok := r.ids[subject]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownSubject, subject)
	}
	return id, nil
}

// SchemaFor implements Registry.
func (r *FixedRegistry) SchemaFor(id int32) (string, error) {
	s, ok := r.schemas[id]
	if !ok {
		return "", fmt.Errorf("%w %d", ErrUnknownSchemaID, id)
	}
	return s, nil
}
