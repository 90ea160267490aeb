package stream

import "errors"

var (
	// ErrClosed is returned by Produce after Close.
	ErrClosed = errors.New("stream: producer closed")

	// ErrNoTopic is returned by Produce for a message without a Topic: a
	// Producer serves every topic a stage writes, so each message names
	// its own.
	ErrNoTopic = errors.New("stream: message has no topic")

	// ErrPartitionOutOfRange is returned by Produce for a message pinned
	// with AtPartition to a partition its topic does not have.
	ErrPartitionOutOfRange = errors.New("stream: partition out of range")

	// ErrRunning is returned by Run when the Consumer is already running
	// or has run: a Consumer is one group membership, used once.
	ErrRunning = errors.New("stream: consumer already run")

	// ErrHandlerPanic is returned, wrapped, by Run when the Handler
	// panicked; nothing of that batch is committed.
	ErrHandlerPanic = errors.New("stream: handler panicked")

	// ErrNotLoopback is returned by StartEmbedded for an address off
	// 127.0.0.1: kfake binds the loopback interface only.
	ErrNotLoopback = errors.New("stream: the embedded broker listens on 127.0.0.1 only")
)
