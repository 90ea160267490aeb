package model

import "errors"

// Errors returned when a model from outside (a ModelUpdate record or a file)
// is rejected. They are wrapped with the tensor or field at fault; match them
// with errors.Is.
var (
	// ErrShape means a tensor, vector or dimension does not have the size the
	// model's features, hidden size and classes require.
	ErrShape = errors.New("wrong shape")

	// ErrNonFinite means a weight, bias, normalisation statistic or threshold
	// is NaN or infinite.
	ErrNonFinite = errors.New("non-finite value")

	// ErrSpecMismatch means the model was trained for a different feature
	// spec than the one this binary computes, so its inputs would be
	// misinterpreted.
	ErrSpecMismatch = errors.New("feature spec hash mismatch")

	// ErrCorrupt means a model file is truncated, has a bad magic number,
	// an unknown format version or a checksum that does not match.
	ErrCorrupt = errors.New("corrupt model file")

	// ErrInvalid means a field other than a tensor is unusable: an unknown
	// update kind, a missing or duplicate tensor, a bad class name.
	ErrInvalid = errors.New("invalid model")
)
