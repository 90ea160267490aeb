package adapter

import (
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// handleModel takes one record of the models topic. The adapter builds on
// the newest verified update of its model: a full update (from `metaids
// train`) replaces the model, a head update (its own, or another
// adapter's) replaces the head. Updates it cannot verify are counted and
// ignored, so that a forged record can neither become the base of the next
// update nor push the version numbers up.
func (s *Stage) handleModel(msg *kafka.Message) {
	if msg.Value == nil {
		return // a tombstone
	}
	u, err := s.codecs.DecodeModelUpdate(msg.Value)
	if err != nil {
		s.rejectModel("", 0, msg, "decode", err)
		return
	}
	if u.Name != s.set.Model {
		s.met.modelUpdates.WithLabelValues("ignored").Inc()
		return
	}
	if err := schemas.VerifyModelUpdate(&u, s.keys); err != nil {
		s.rejectModel(u.Name, u.Version, msg, "verify", err)
		return
	}
	s.maxVersion = max(s.maxVersion, u.Version)
	if u.Kind == schemas.UpdateHead {
		for k, v := range u.Gate {
			if p, ok := strings.CutPrefix(k, gateResumePrefix); ok {
				if part, err := strconv.Atoi(p); err == nil && v >= 0 {
					s.resumeSeen[part] = max(s.resumeSeen[part], int64(v))
				}
			}
		}
	}
	if s.cur != nil && u.Version <= s.cur.Version {
		s.met.modelUpdates.WithLabelValues("ignored").Inc()
		return
	}
	var m *model.Model
	switch u.Kind {
	case schemas.UpdateFull:
		m, err = model.FromUpdate(&u, s.specHash)
		if err == nil {
			s.encoders[u.Version] = u.Version
		}
	case schemas.UpdateHead:
		if s.cur == nil {
			s.rejectModel(u.Name, u.Version, msg, "apply", errNoBase)
			return
		}
		m, err = s.cur.ApplyHead(&u)
		if err == nil {
			s.encoders[u.Version] = s.encoders[s.cur.Version]
		}
	default:
		err = errUnknownKind
	}
	if err != nil {
		s.rejectModel(u.Name, u.Version, msg, "apply", err)
		return
	}
	if _, ok := m.ClassIndex(schemas.VerdictBenign); !ok {
		s.rejectModel(u.Name, u.Version, msg, "apply", ErrNoBenign)
		return
	}
	s.cur = m
	s.version.Store(m.Version)
	s.met.modelVersion.Set(float64(m.Version))
	s.met.modelUpdates.WithLabelValues("loaded").Inc()
	s.log.Info("model loaded", "model_version", m.Version, "kind", string(u.Kind), "classes", len(m.Classes()), "exemplars", len(m.Exemplars))
}

func (s *Stage) rejectModel(name string, version int64, msg *kafka.Message, step string, err error) {
	s.met.modelUpdates.WithLabelValues("rejected").Inc()
	s.log.Warn("model update rejected", "model", name, "model_version", version, "step", step,
		"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "err", err)
}

// sameEncoder reports whether a flow scored by the given model version has
// an embedding the current model can use: one from the same encoder. A
// version the adapter has not seen (from before the topic's retention, say)
// is given the benefit of the doubt; the embedding width is checked anyway.
func (s *Stage) sameEncoder(version int64) bool {
	enc, ok := s.encoders[version]
	return !ok || enc == s.encoders[s.cur.Version]
}
