package adapter

import "errors"

var (
	// ErrNoBenign means the model has no "benign" class, so false positives
	// cannot be told apart and the gate has no false-positive rate to guard.
	ErrNoBenign = errors.New("model has no benign class")

	// ErrShape means an embedding's length is not the model's embedding
	// width: it came from a scorer running a model of another shape.
	ErrShape = errors.New("embedding width does not match the model")

	// ErrUnknownFormat means ReadLabels was asked for a format other than
	// csv or json.
	ErrUnknownFormat = errors.New("unknown label file format")

	// ErrLabelFile means a label file is malformed: a missing column, a
	// field that does not parse, or a label that breaks schemas.Label's
	// rules. The error names the line or item.
	ErrLabelFile = errors.New("bad label file")

	// errNoBase means a head update came with no model to apply it to.
	errNoBase = errors.New("head update with no model to apply it to")

	// errUnknownKind means a model update is neither FULL nor HEAD.
	errUnknownKind = errors.New("unknown update kind")
)
