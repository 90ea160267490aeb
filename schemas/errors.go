package schemas

import "errors"

var (
	// ErrBadMagic means the first byte of a framed record is not the Confluent
	// magic byte 0: the record was not written by an Avro serializer.
	ErrBadMagic = errors.New("bad magic byte")

	// ErrTruncated means a record ends before its frame header or Avro body is
	// complete, or declares more items than its remaining bytes can hold.
	ErrTruncated = errors.New("truncated")

	// ErrUnknownSchemaID means the frame names a schema id the registry does
	// not know.
	ErrUnknownSchemaID = errors.New("unknown schema id")

	// ErrSchemaMismatch means the frame names a known schema, but not the one
	// of the record type being decoded (an Alert read as a Flow).
	ErrSchemaMismatch = errors.New("schema mismatch")

	// ErrMalformed means the Avro body does not follow its schema: a bad
	// varint, an out-of-range enum or union index, trailing bytes, or JSON
	// that does not parse.
	ErrMalformed = errors.New("malformed")

	// ErrInvalid means a record follows its schema but a value breaks the
	// record's rules: an address that does not parse, a port above 65535, a
	// negative counter, a tensor whose data does not match its shape.
	ErrInvalid = errors.New("invalid record")

	// ErrUnknownSubject means the registry has no id for a subject.
	ErrUnknownSubject = errors.New("unknown subject")

	// ErrUnsigned means a model update carries no signature.
	ErrUnsigned = errors.New("model update is unsigned")

	// ErrUnknownKey means a model update is signed with a key id that is not
	// among the trusted keys.
	ErrUnknownKey = errors.New("unknown signing key")

	// ErrBadSignature means a model update's signature does not verify under
	// the key it names: the update was altered or signed by someone else.
	ErrBadSignature = errors.New("bad signature")

	// ErrBadKey means key material is not an Ed25519 key in the expected form.
	ErrBadKey = errors.New("bad ed25519 key")
)
