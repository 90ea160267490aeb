package ingest

import (
	"context"

	"github.com/metaids/metaids/schemas"
)

// openCodecs builds the Avro codecs on the schema ids cfg names: the fixed
// table, or a Confluent Schema Registry's (registering the schemas when so
// configured). It is the one place a stage talks to the registry, bounded
// by the registry's own request timeout.
func openCodecs(cfg schemas.RegistryConfig) (*schemas.Codecs, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*cfg.Timeout)
	defer cancel()
	reg, err := schemas.OpenRegistry(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return schemas.NewCodecs(reg)
}
