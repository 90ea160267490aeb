package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/metaids/metaids/schemas"
)

// Update returns the model as a record for the models topic: kind
// schemas.UpdateFull carries everything (encoder, heads, normalisation,
// classes, thresholds, exemplars); schemas.UpdateHead carries the classifier
// head with its classes, thresholds and exemplars, plus the shape and spec
// hash that ApplyHead checks it against. The record holds copies, so later
// training does not change it. Signing is the caller's business.
func (m *Model) Update(kind schemas.UpdateKind) (*schemas.ModelUpdate, error) {
	u := &schemas.ModelUpdate{
		Name:             m.Name,
		Version:          m.Version,
		ParentVersion:    m.ParentVersion,
		Kind:             kind,
		SpecHash:         m.SpecHash,
		Features:         int32(m.features),
		Hidden:           int32(m.hidden),
		CreatedNs:        m.CreatedNs,
		Classes:          slices.Clone(m.classes),
		Thresholds:       slices.Clone(m.Thresholds),
		AnomalyThreshold: m.AnomalyThreshold,
		Exemplars:        cloneExemplars(m.Exemplars),
	}
	var tensors []Tensor
	switch kind {
	case schemas.UpdateFull:
		u.NormMean, u.NormStd = slices.Clone(m.mean), slices.Clone(m.std)
		tensors = m.Tensors()
	case schemas.UpdateHead:
		tensors = m.Tensors()[6:] // the classifier's weight and bias
	default:
		return nil, fmt.Errorf("model update: %w: unknown kind %q", ErrInvalid, kind)
	}
	for _, t := range tensors {
		u.Tensors = append(u.Tensors, schemas.Tensor{Name: t.Name, Rows: int32(t.Rows), Cols: int32(t.Cols), Data: slices.Clone(t.Data)})
	}
	if d := m.EmbeddingDim(); kind == schemas.UpdateFull && len(m.GateBenign) > 0 {
		u.Tensors = append(u.Tensors, schemas.Tensor{Name: TensorGateBenign, Rows: int32(len(m.GateBenign) / d), Cols: int32(d), Data: slices.Clone(m.GateBenign)})
	}
	if d := m.EmbeddingDim(); kind == schemas.UpdateFull && len(m.GateKnown) > 0 {
		t := schemas.Tensor{Name: TensorGateKnown, Rows: int32(len(m.GateKnown)), Cols: int32(1 + d), Data: make([]float32, 0, len(m.GateKnown)*(1+d))}
		for _, e := range m.GateKnown {
			t.Data = append(append(t.Data, float32(e.Class)), e.Embedding...)
		}
		u.Tensors = append(u.Tensors, t)
	}
	ct, err := campaignsTensor(m.Campaigns)
	if err != nil {
		return nil, err
	}
	if ct != nil {
		u.Tensors = append(u.Tensors, *ct)
	}
	if kind == schemas.UpdateFull && m.perFlow {
		u.Tensors = append(u.Tensors, schemas.Tensor{Name: TensorPerFlow, Rows: 1, Cols: 1, Data: []float32{1}})
	}
	return u, nil
}

// TensorGateBenign carries Model.GateBenign in a full update, one row per
// flow, absent when there are none. Like TensorPerFlow it is a tensor so
// that the record's schema stays as it is. Head updates do not carry it:
// the set belongs to the encoder, which they keep.
const TensorGateBenign = "gate.benign"

// MaxGateBenign bounds the rows of TensorGateBenign a model may carry, so
// a hostile update cannot make every adapter hold gigabytes.
const MaxGateBenign = 4096

// takeGateBenign removes the gate set from tensors and returns it, checked
// against the embedding width d.
func takeGateBenign(tensors []schemas.Tensor, d int) ([]schemas.Tensor, []float32, error) {
	t, rest, err := takeRows(tensors, TensorGateBenign, MaxGateBenign, d)
	if t == nil || err != nil {
		return rest, nil, err
	}
	for j, v := range t.Data {
		if !finite32(v) {
			return nil, nil, fmt.Errorf("model update: tensor %q: %w at row %d, column %d", TensorGateBenign, ErrNonFinite, j/d, j%d)
		}
	}
	return rest, slices.Clone(t.Data), nil
}

// TensorGateKnown carries Model.GateKnown in a full update, one row per
// flow: its class index, then its embedding. Absent when there are none.
const TensorGateKnown = "gate.known"

// MaxGateKnown bounds the rows of TensorGateKnown, as MaxGateBenign does.
const MaxGateKnown = 16384

// takeGateKnown removes the known-class gate set from tensors and returns
// it, checked against the embedding width d and the class count c: every
// class index must name an attack class of the model.
func takeGateKnown(tensors []schemas.Tensor, d, c int) ([]schemas.Tensor, []schemas.Exemplar, error) {
	w := 1 + d
	t, rest, err := takeRows(tensors, TensorGateKnown, MaxGateKnown, w)
	if t == nil || err != nil {
		return rest, nil, err
	}
	out := make([]schemas.Exemplar, t.Rows)
	for i := range out {
		r := t.Data[i*w : (i+1)*w]
		if k := r[0]; !(k >= 1 && k < float32(c) && k == float32(int32(k))) {
			return nil, nil, fmt.Errorf("model update: tensor %q: %w: row %d has class %v, want an attack class index 1 to %d",
				TensorGateKnown, ErrInvalid, i, k, c-1)
		}
		for j, v := range r[1:] {
			if !finite32(v) {
				return nil, nil, fmt.Errorf("model update: tensor %q: %w at row %d, column %d", TensorGateKnown, ErrNonFinite, i, j+1)
			}
		}
		out[i] = schemas.Exemplar{Class: int32(r[0]), Embedding: slices.Clone(r[1:])}
	}
	return rest, out, nil
}

// takeRows is takeTensor for a tensor of 1 to maxRows rows of cols
// values each, checked.
func takeRows(tensors []schemas.Tensor, name string, maxRows, cols int) (*schemas.Tensor, []schemas.Tensor, error) {
	t, rest, err := takeTensor(tensors, name)
	if t == nil || err != nil {
		return t, rest, err
	}
	if t.Rows < 1 || int(t.Rows) > maxRows || int(t.Cols) != cols || len(t.Data) != int(t.Rows)*cols {
		return nil, nil, fmt.Errorf("model update: tensor %q: %w: %d×%d with %d values, want 1 to %d rows of %d",
			name, ErrShape, t.Rows, t.Cols, len(t.Data), maxRows, cols)
	}
	return t, rest, nil
}

// takeTensor removes the tensor named name, which the model's Tensors do
// not hold, from tensors: it returns that tensor (nil when absent) and the
// others. A second one of the name is an error.
func takeTensor(tensors []schemas.Tensor, name string) (*schemas.Tensor, []schemas.Tensor, error) {
	i := slices.IndexFunc(tensors, func(t schemas.Tensor) bool { return t.Name == name })
	if i < 0 {
		return nil, tensors, nil
	}
	t := tensors[i]
	rest := slices.Delete(slices.Clone(tensors), i, i+1)
	if slices.ContainsFunc(rest, func(t schemas.Tensor) bool { return t.Name == name }) {
		return nil, nil, fmt.Errorf("model update: tensor %q: %w: appears twice", name, ErrInvalid)
	}
	return &t, rest, nil
}

// TensorPerFlow marks a per-flow model (Config.PerFlow) in a full update: a
// 1×1 tensor holding 1, absent for the per-host LSTM. It travels as a
// tensor, not as a field of the record, because the codecs read only the
// embedded schema: a new field would make the records already on the
// compacted models topic, and the model files already written, unreadable.
// A build that predates it refuses the unknown tensor instead of stepping
// a per-flow model with state. Head updates do not carry it: they keep the
// base model's encoder, and with it its mode.
const TensorPerFlow = "lstm.per_flow"

// takePerFlow removes the per-flow marker from tensors and reports whether
// it was there; a marker of another shape or value is an error.
func takePerFlow(tensors []schemas.Tensor) ([]schemas.Tensor, bool, error) {
	t, rest, err := takeTensor(tensors, TensorPerFlow)
	if t == nil || err != nil {
		return rest, false, err
	}
	if t.Rows != 1 || t.Cols != 1 || len(t.Data) != 1 || t.Data[0] != 1 {
		return nil, false, fmt.Errorf("model update: tensor %q: %w: want 1×1 holding 1, got %d×%d %v", TensorPerFlow, ErrInvalid, t.Rows, t.Cols, t.Data)
	}
	return rest, true, nil
}

// FromUpdate builds a model from a full update, checking everything a
// scorer must not trust: dimensions, every tensor's presence and shape,
// finiteness of all numbers, class names, and, unless specHash is empty,
// that the model was trained for this feature spec. The error names the
// field or tensor at fault and wraps ErrShape, ErrNonFinite, ErrSpecMismatch
// or ErrInvalid.
func FromUpdate(u *schemas.ModelUpdate, specHash string) (*Model, error) {
	if u.Kind != schemas.UpdateFull {
		return nil, fmt.Errorf("model update: %w: kind %q, want %q", ErrInvalid, u.Kind, schemas.UpdateFull)
	}
	if err := checkSpec(u.SpecHash, specHash); err != nil {
		return nil, err
	}
	f, h := int(u.Features), int(u.Hidden)
	if f < 1 || f > MaxFeatures || h < 1 || h > MaxHidden {
		return nil, fmt.Errorf("model update: %w: features %d, hidden %d (limits %d, %d)", ErrShape, f, h, MaxFeatures, MaxHidden)
	}
	if err := checkClasses(u.Classes); err != nil {
		return nil, fmt.Errorf("model update: classes: %w: %w", ErrInvalid, err)
	}
	m := newShaped(f, h, len(u.Classes))
	m.Name, m.Version, m.ParentVersion, m.CreatedNs = u.Name, u.Version, u.ParentVersion, u.CreatedNs
	m.SpecHash = u.SpecHash
	copy(m.classes, u.Classes)
	if err := m.setHeadMeta(u); err != nil {
		return nil, err
	}
	if err := checkVec("norm_mean", u.NormMean, f); err != nil {
		return nil, err
	}
	if err := checkVec("norm_std", u.NormStd, f); err != nil {
		return nil, err
	}
	if err := m.SetNorm(u.NormMean, u.NormStd); err != nil {
		return nil, fmt.Errorf("model update: %w", err)
	}
	tensors, perFlow, err := takePerFlow(u.Tensors)
	if err != nil {
		return nil, err
	}
	m.perFlow = perFlow
	if tensors, m.GateBenign, err = takeGateBenign(tensors, m.EmbeddingDim()); err != nil {
		return nil, err
	}
	if tensors, m.GateKnown, err = takeGateKnown(tensors, m.EmbeddingDim(), m.NumClasses()); err != nil {
		return nil, err
	}
	if tensors, m.Campaigns, err = takeCampaigns(tensors, m.NumClasses()); err != nil {
		return nil, err
	}
	if err := fillTensors(m.Tensors(), tensors); err != nil {
		return nil, err
	}
	return m, nil
}

// ApplyHead returns a copy of m with the classifier head, classes,
// thresholds, exemplars and version of the head-only (or full) update u.
// The update must be for the same shape and feature spec; the encoder,
// normalisation and m itself are unchanged.
func (m *Model) ApplyHead(u *schemas.ModelUpdate) (*Model, error) {
	if u.Kind != schemas.UpdateHead && u.Kind != schemas.UpdateFull {
		return nil, fmt.Errorf("model update: %w: unknown kind %q", ErrInvalid, u.Kind)
	}
	if err := checkSpec(u.SpecHash, m.SpecHash); err != nil {
		return nil, err
	}
	if int(u.Features) != m.features || int(u.Hidden) != m.hidden {
		return nil, fmt.Errorf("model update: %w: head for features %d, hidden %d on a model of %d, %d", ErrShape, u.Features, u.Hidden, m.features, m.hidden)
	}
	if err := checkClasses(u.Classes); err != nil {
		return nil, fmt.Errorf("model update: classes: %w: %w", ErrInvalid, err)
	}
	c := len(u.Classes)
	out := m.Clone()
	out.Name, out.Version, out.ParentVersion, out.CreatedNs = u.Name, u.Version, u.ParentVersion, u.CreatedNs
	out.classes = slices.Clone(u.Classes)
	out.Thresholds = make([]float32, c)
	out.P.ClsW = make([]float32, c*m.EmbeddingDim())
	out.P.ClsB = make([]float32, c)
	if err := out.setHeadMeta(u); err != nil {
		return nil, err
	}
	tensors, campaigns, err := takeCampaigns(u.Tensors, c)
	if err != nil {
		return nil, err
	}
	out.Campaigns = campaigns
	var head []schemas.Tensor
	for _, t := range tensors {
		if t.Name == TensorClsW || t.Name == TensorClsB || u.Kind == schemas.UpdateHead {
			head = append(head, t)
		}
	}
	if err := fillTensors(out.Tensors()[6:], head); err != nil {
		return nil, err
	}
	out.WeightsChanged()
	return out, nil
}

// setHeadMeta copies and checks thresholds and exemplars.
func (m *Model) setHeadMeta(u *schemas.ModelUpdate) error {
	if err := checkVec("thresholds", u.Thresholds, len(m.classes)); err != nil {
		return err
	}
	if !finite32(u.AnomalyThreshold) {
		return fmt.Errorf("model update: anomaly_threshold: %w", ErrNonFinite)
	}
	copy(m.Thresholds, u.Thresholds)
	m.AnomalyThreshold = u.AnomalyThreshold
	d := m.EmbeddingDim()
	for i, e := range u.Exemplars {
		if e.Class < 0 || int(e.Class) >= len(m.classes) {
			return fmt.Errorf("model update: exemplar %d: %w: class %d of %d", i, ErrInvalid, e.Class, len(m.classes))
		}
		if err := checkVec(fmt.Sprintf("exemplar %d", i), e.Embedding, d); err != nil {
			return err
		}
	}
	m.Exemplars = cloneExemplars(u.Exemplars)
	return nil
}

func checkSpec(got, want string) error {
	if want != "" && got != want {
		return fmt.Errorf("model update: %w: model was trained for feature spec %q, this build computes %q", ErrSpecMismatch, got, want)
	}
	return nil
}

func checkVec(name string, v []float32, n int) error {
	if len(v) != n {
		return fmt.Errorf("model update: %s: %w: %d values, want %d", name, ErrShape, len(v), n)
	}
	for i, x := range v {
		if !finite32(x) {
			return fmt.Errorf("model update: %s[%d]: %w", name, i, ErrNonFinite)
		}
	}
	return nil
}

// fillTensors copies each record tensor into the model tensor of its name,
// requiring each exactly once, in its shape and finite.
func fillTensors(dst []Tensor, src []schemas.Tensor) error {
	byName := make(map[string]int, len(dst))
	for i, t := range dst {
		byName[t.Name] = i
	}
	seen := make([]bool, len(dst))
	var errs []error
	for _, t := range src {
		i, ok := byName[t.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("model update: tensor %q: %w: unknown name", t.Name, ErrInvalid))
			continue
		}
		if seen[i] {
			errs = append(errs, fmt.Errorf("model update: tensor %q: %w: appears twice", t.Name, ErrInvalid))
			continue
		}
		seen[i] = true
		want := dst[i]
		if int(t.Rows) != want.Rows || int(t.Cols) != want.Cols || len(t.Data) != want.Rows*want.Cols {
			errs = append(errs, fmt.Errorf("model update: tensor %q: %w: %d×%d with %d values, want %d×%d",
				t.Name, ErrShape, t.Rows, t.Cols, len(t.Data), want.Rows, want.Cols))
			continue
		}
		for j, v := range t.Data {
			if !finite32(v) {
				errs = append(errs, fmt.Errorf("model update: tensor %q: %w at row %d, column %d", t.Name, ErrNonFinite, j/want.Cols, j%want.Cols))
				break
			}
		}
		copy(want.Data, t.Data)
	}
	for i, ok := range seen {
		if !ok {
			errs = append(errs, fmt.Errorf("model update: tensor %q: %w: missing", dst[i].Name, ErrInvalid))
		}
	}
	return errors.Join(errs...)
}
