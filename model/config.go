package model

import (
	"errors"
	"fmt"
)

// Limits on model dimensions. They bound what a model update or file from
// outside can make us allocate; real models are far smaller.
const (
	MaxFeatures = 4096
	MaxHidden   = 4096
	MaxClasses  = 4096
)

// Config sets a new model's shape. Feature count and spec hash come from the
// feature spec the model will be fed.
type Config struct {
	// Name is the model's name, the key of its records on the models topic.
	// Default "metaids".
	Name string `yaml:"name"`
	// Features is F, the length of a raw feature vector. Default 32.
	Features int `yaml:"features"`
	// Hidden is H, the LSTM's hidden size. Default 64.
	Hidden int `yaml:"hidden"`
	// Classes names the classifier's outputs; index 0 is benign by
	// convention. Default ["benign"].
	Classes []string `yaml:"classes"`
	// SpecHash identifies the feature spec; loading a model checks it.
	// Default "" (unchecked).
	SpecHash string `yaml:"spec_hash"`
	// PerFlow makes the model a per-flow baseline: the LSTM's state is
	// reset to zero before every step, so each flow is judged on its own
	// features by the same cell and heads. It is what the per-host LSTM
	// has to beat to show the sequence matters. Default false.
	PerFlow bool `yaml:"per_flow"`
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{Name: "metaids", Features: 32, Hidden: 64, Classes: []string{"benign"}}
}

// Validate reports every problem with c, each naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.Features < 1 || c.Features > MaxFeatures {
		errs = append(errs, fmt.Errorf("features: must be between 1 and %d, got %d", MaxFeatures, c.Features))
	}
	if c.Hidden < 1 || c.Hidden > MaxHidden {
		errs = append(errs, fmt.Errorf("hidden: must be between 1 and %d, got %d", MaxHidden, c.Hidden))
	}
	if err := checkClasses(c.Classes); err != nil {
		errs = append(errs, fmt.Errorf("classes: %w", err))
	}
	return errors.Join(errs...)
}

// checkClasses requires at least one class, no empty names and no duplicates,
// because alerts and labels refer to classes by name.
func checkClasses(classes []string) error {
	if len(classes) == 0 || len(classes) > MaxClasses {
		return fmt.Errorf("need between 1 and %d classes, got %d", MaxClasses, len(classes))
	}
	seen := make(map[string]bool, len(classes))
	for i, name := range classes {
		if name == "" {
			return fmt.Errorf("class %d has an empty name", i)
		}
		if seen[name] {
			return fmt.Errorf("class %q appears twice", name)
		}
		seen[name] = true
	}
	return nil
}
