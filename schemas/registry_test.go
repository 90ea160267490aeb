package schemas

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestFixedRegistry(t *testing.T) {
	r, err := NewFixedRegistry()
	if err != nil {
		t.Fatalf("NewFixedRegistry() = %v", err)
	}
	want := map[string]int32{
		SubjectFlow: 1, SubjectAlert: 2, SubjectLabel: 3,
		SubjectModelUpdate: 4, SubjectDeadLetter: 5, SubjectAction: 6,
	}
	for subject, wantID := range want {
		id, err := r.IDFor(subject)
		if err != nil || id != wantID {
			t.Errorf("IDFor(%s) = %d, %v, want %d", subject, id, err, wantID)
		}
		schema, err := r.SchemaFor(id)
		if err != nil {
			t.Fatalf("SchemaFor(%d) = %v", id, err)
		}
		name := subject[strings.LastIndexByte(subject, '.')+1:]
		if !strings.Contains(schema, `"name": "`+name+`"`) {
			t.Errorf("SchemaFor(%d) does not define record %s", id, name)
		}
	}
	if _, err := r.IDFor("io.metaids.Nope"); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("IDFor(unknown) = %v, want ErrUnknownSubject", err)
	}
	if _, err := r.SchemaFor(7); !errors.Is(err, ErrUnknownSchemaID) || !strings.Contains(err.Error(), "7") {
		t.Errorf("SchemaFor(7) = %v, want ErrUnknownSchemaID naming 7", err)
	}
	if got := len(Subjects()); got != len(want) {
		t.Errorf("len(Subjects()) = %d, want %d", got, len(want))
	}
}

// mapRegistry stands in for a Schema Registry that numbered the subjects its
// own way.
type mapRegistry struct {
	ids     map[string]int32
	schemas map[int32]string
}

func (m mapRegistry) IDFor(s string) (int32, error) {
	id, ok := m.ids[s]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownSubject, s)
	}
	return id, nil
}

func (m mapRegistry) SchemaFor(id int32) (string, error) {
	s, ok := m.schemas[id]
	if !ok {
		return "", fmt.Errorf("%w %d", ErrUnknownSchemaID, id)
	}
	return s, nil
}

func newMapRegistry(t *testing.T, base int32) mapRegistry {
	t.Helper()
	m := mapRegistry{ids: map[string]int32{}, schemas: map[int32]string{}}
	for i, s := range Subjects() {
		text, err := Schema(s)
		if err != nil {
			t.Fatal(err)
		}
		m.ids[s] = base + int32(i)
		m.schemas[base+int32(i)] = text
	}
	return m
}

func TestNewCodecsWithRegistry(t *testing.T) {
	reg := newMapRegistry(t, 1000)
	c, err := NewCodecs(reg)
	if err != nil {
		t.Fatalf("NewCodecs(registry) = %v", err)
	}
	f := sampleFlow()
	b, err := c.AppendFlow(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := SplitFrame(b); err != nil || id != 1000 {
		t.Errorf("frame id = %d, %v, want 1000 from the registry", id, err)
	}
	if got, err := c.DecodeFlow(b); err != nil || got != f {
		t.Errorf("DecodeFlow = %+v, %v, want %+v", got, err, f)
	}
	// A record framed with the fixed table's id is foreign to this registry.
	fixed := newCodecs(t)
	b, err = fixed.AppendFlow(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecodeFlow(b); !errors.Is(err, ErrUnknownSchemaID) {
		t.Errorf("DecodeFlow(id 1) with registry ids 1000.. = %v, want ErrUnknownSchemaID", err)
	}
}

func TestNewCodecsRejectsRegistry(t *testing.T) {
	tests := []struct {
		name string
		edit func(mapRegistry)
		want string
	}{
		{"missing subject", func(m mapRegistry) { delete(m.ids, SubjectAlert) }, "schema id for io.metaids.Alert"},
		{"missing schema", func(m mapRegistry) { delete(m.schemas, 1003) }, "schema 1003 for io.metaids.ModelUpdate"},
		{"duplicate id", func(m mapRegistry) { m.ids[SubjectAction] = 1000 }, "schema id 1000 names both"},
		{"different schema", func(m mapRegistry) {
			m.schemas[1002] = strings.Replace(m.schemas[1002], `"name": "analyst", "type": "string"`, `"name": "analyst", "type": "long"`, 1)
		}, "registered schema 1002 for io.metaids.Label differs"},
		{"not a schema", func(m mapRegistry) { m.schemas[1000] = "{" }, "compile registered schema 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newMapRegistry(t, 1000)
			tc.edit(reg)
			if _, err := NewCodecs(reg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCodecs = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestRegisteredSchemaMayDifferInDocs checks that only the canonical form is
// compared: a registry may hold the schema with other docs and spacing.
func TestRegisteredSchemaMayDifferInDocs(t *testing.T) {
	reg := newMapRegistry(t, 1)
	reg.schemas[1] = strings.ReplaceAll(strings.ReplaceAll(reg.schemas[1], `"doc": ">= 0."`, `"doc": "changed"`), "\n", " ")
	if _, err := NewCodecs(reg); err != nil {
		t.Errorf("NewCodecs with a reformatted, redocumented schema = %v", err)
	}
}
