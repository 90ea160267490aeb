// Package model is the math at the heart of metaids: an LSTM encoder over a
// host's flows with a next-flow predictor and a classifier, its training
// (backpropagation through time, AdamW), prototypes for new classes and its
// (de)serialisation. It is pure Go on gonum and knows nothing of Kafka: the
// scorer steps it, `metaids train` and the adapter fit it.
package model
