package features

import "errors"

// Errors returned by this package. Match them with errors.Is; the wrapped
// message says what exactly was wrong.
var (
	// ErrCorrupt means the bytes are not a well-formed Arrow IPC stream
	// holding exactly one record batch: truncated, garbage, lengths that
	// point outside the input, or features we never write (compression,
	// dictionaries, nulls).
	ErrCorrupt = errors.New("corrupt arrow ipc stream")

	// ErrSchemaMismatch means the stream is well formed but its columns are
	// not the ones this package writes: a missing, renamed, reordered or
	// retyped column, or missing schema metadata.
	ErrSchemaMismatch = errors.New("arrow schema mismatch")

	// ErrSpecMismatch means a features batch was built with a different
	// feature spec (its hash or version differs from Default's). The usual
	// cause is ingest and scorer running different releases.
	ErrSpecMismatch = errors.New("feature spec mismatch")

	// ErrNonFinite means a value that must be finite (a feature, a score)
	// is NaN or infinite. A NaN stepped into a host's LSTM state would stay
	// there, so such values are refused at every boundary.
	ErrNonFinite = errors.New("value not finite")

	// ErrShape means a slice passed to a builder has the wrong length for
	// its schema (class probabilities, embedding).
	ErrShape = errors.New("wrong shape")
)
