package scorer

import (
	"math"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
)

// stepper advances the hosts of one features message through the model.
//
// A message holds flows of many hosts, several of them from the same host.
// One model step advances a set of distinct hosts by one flow each, so the
// rows are planned into waves: wave k holds the k-th flow of every host that
// has at least k+1 flows in the message, in row order. Waves run in order,
// and within a wave every host is at a different slot, so a wave's states
// can be gathered from the store's slabs, stepped as one matrix product
// and scattered back before the next wave reads them. The result is the same
// as feeding the flows one message at a time (TestWavesMatchSequential),
// with one model step per flow and no window recomputed.
//
// A stepper keeps its buffers between messages; it is not safe for
// concurrent use.
type stepper struct {
	maxFlows int // most hosts per model step, the workspace's size
	ws       *model.Workspace
	out      model.StepOut
	x        []float32 // chunk inputs, maxFlows×F
	h, c     []float32 // chunk states, maxFlows×H
	hPrev    []float32 // chunk states before the step, for anomaly explanations

	// The plan: per row its host's slot, and the rows in wave order.
	slot []int32
	wave []int32
	// expired[r] says that row r's host was idle past the TTL before it:
	// its state starts afresh at this flow. Between messages the store
	// drops such hosts (store.expire); deciding it per flow as well makes
	// the outcome the same wherever the messages' boundaries fall, as the
	// offline evaluation and training assume.
	expired []bool
	order   []int32
	starts  []int32 // wave w is order[starts[w]:starts[w+1]]

	// Results per row, in row order. probs is n×C and emb n×D.
	nc, d   int // C and D of the last run
	anomaly []float32
	probs   []float32
	emb     []float32
	before  []uint32 // the host's flows before this one, 0 for a fresh state
	// prevIdx[r] ≥ 0 is row r's index in prevH, kept for rows whose anomaly
	// passed the threshold, so that an alert can say which features the
	// predictor missed; −1 otherwise.
	prevIdx []int32
	prevH   []float32
	invalid int // non-finite feature values of the last run
}

func newStepper(maxFlows int) *stepper {
	return &stepper{maxFlows: maxFlows}
}

// plan assigns the message's rows their slots and waves. It marks every host
// of the message as seen, so none of them is evicted before the message is
// done.
func (sp *stepper) plan(st *store, v *features.View) (waves int) {
	n := v.Len()
	st.begin()
	sp.slot = grow(sp.slot, n)
	sp.wave = grow(sp.wave, n)
	sp.expired = grow(sp.expired, n)
	for i := range n {
		s, expired := st.acquire(v.Host(i), v.EndNs(i))
		sp.expired[i] = expired
		sp.slot[i] = s
		m := &st.meta[s]
		if m.gen != st.gen {
			m.gen, m.wave = st.gen, 0
		}
		sp.wave[i] = m.wave
		m.wave++
		waves = max(waves, int(m.wave))
	}
	// Counting sort by wave, stable in row order, so that each host's flows
	// are applied in the order the message lists them.
	sp.starts = grow(sp.starts, waves+1)
	clear(sp.starts)
	for _, w := range sp.wave[:n] {
		sp.starts[w+1]++
	}
	for w := 1; w <= waves; w++ {
		sp.starts[w] += sp.starts[w-1]
	}
	sp.order = grow(sp.order, n)
	next := sp.starts[:waves] // reused as write cursors, then restored
	for i, w := range sp.wave[:n] {
		sp.order[next[w]] = int32(i)
		next[w]++
	}
	for w := waves; w > 0; w-- {
		sp.starts[w] = sp.starts[w-1]
	}
	sp.starts[0] = 0
	return waves
}

// run steps the planned rows wave by wave. keepAbove is the anomaly score
// from which a row's previous hidden state is kept for explanations; +Inf
// keeps none.
func (sp *stepper) run(m *model.Model, st *store, v *features.View, waves int, keepAbove float32) {
	n := v.Len()
	f, hid := m.Features(), m.Hidden()
	c, d := m.NumClasses(), m.EmbeddingDim()
	if sp.ws == nil {
		sp.ws = model.NewWorkspace(m, sp.maxFlows)
	}
	sp.x = grow(sp.x, sp.maxFlows*f)
	sp.h = grow(sp.h, sp.maxFlows*hid)
	sp.c = grow(sp.c, sp.maxFlows*hid)
	sp.hPrev = grow(sp.hPrev, sp.maxFlows*hid)
	sp.nc, sp.d = c, d
	sp.anomaly = grow(sp.anomaly, n)
	sp.probs = grow(sp.probs, n*c)
	sp.emb = grow(sp.emb, n*d)
	sp.before = grow(sp.before, n)
	sp.prevIdx = grow(sp.prevIdx, n)
	sp.prevH = sp.prevH[:0]
	sp.invalid = 0

	for w := range waves {
		rows := sp.order[sp.starts[w]:sp.starts[w+1]]
		for len(rows) > 0 {
			chunk := rows[:min(len(rows), sp.maxFlows)]
			rows = rows[len(chunk):]
			b := len(chunk)
			x := sp.x[:0]
			for j, r := range chunk {
				x = v.Vector(x, int(r))
				s := sp.slot[r]
				meta := &st.meta[s]
				if sp.expired[r] {
					st.reset(s)
				}
				// dt_prev is the gap between the starts of the host's
				// previous flow and this one (the spec's definition), 0
				// for a first flow, as in training, where every sequence
				// starts from a zero state.
				start := v.StartNs(int(r))
				var dt float32
				if meta.flows > 0 {
					dt = features.DeltaT(start - meta.lastNs)
				}
				x[j*f+features.IdxDeltaT] = dt
				x[j*f+features.IdxDstRepeat], x[j*f+features.IdxDeltaDst] = meta.peers.See(features.PeerKey(v.Peer(int(r))), start)
				sp.before[r] = meta.flows
				if meta.flows < math.MaxUint32 {
					meta.flows++
				}
				meta.lastNs = start
				hs, cs := st.state(s)
				copy(sp.h[j*hid:(j+1)*hid], hs)
				copy(sp.c[j*hid:(j+1)*hid], cs)
			}
			copy(sp.hPrev[:b*hid], sp.h[:b*hid])
			m.Step(sp.ws, sp.h[:b*hid], sp.c[:b*hid], x, &sp.out)
			sp.invalid += sp.out.Invalid
			flushSubnormals(sp.h[:b*hid])
			flushSubnormals(sp.c[:b*hid])
			for j, r := range chunk {
				hs, cs := st.state(sp.slot[r])
				copy(hs, sp.h[j*hid:(j+1)*hid])
				copy(cs, sp.c[j*hid:(j+1)*hid])
				a := sp.out.Anomaly[j]
				sp.anomaly[r] = a
				copy(sp.probs[int(r)*c:(int(r)+1)*c], sp.out.ProbsOf(j))
				copy(sp.emb[int(r)*d:(int(r)+1)*d], sp.out.EmbOf(j))
				sp.prevIdx[r] = -1
				if a >= keepAbove {
					sp.prevIdx[r] = int32(len(sp.prevH) / hid)
					sp.prevH = append(sp.prevH, sp.hPrev[j*hid:(j+1)*hid]...)
				}
			}
		}
	}
}

// probsOf returns row r's class probabilities.
func (sp *stepper) probsOf(r int) []float32 { return sp.probs[r*sp.nc : (r+1)*sp.nc] }

// embOf returns row r's embedding [h_t, x̂_t].
func (sp *stepper) embOf(r int) []float32 { return sp.emb[r*sp.d : (r+1)*sp.d] }

// prevOf returns the hidden state row r's host had before its flow, if kept.
func (sp *stepper) prevOf(r int, hid int) ([]float32, bool) {
	i := sp.prevIdx[r]
	if i < 0 {
		return nil, false
	}
	return sp.prevH[int(i)*hid : (int(i)+1)*hid], true
}

// flushSubnormals sets subnormal values to zero. A saturated gate leaves
// states of the order of 1e-40 behind, and every later step that reads
// them runs several times slower (the CPU handles subnormal operands in
// microcode); zeroing them changes the states by less than float32 can
// tell apart from zero anyway. Go sets no flush-to-zero mode, so it is done
// here, on the states that persist between steps.
func flushSubnormals(x []float32) {
	for i, v := range x {
		if math.Float32bits(v)&0x7f800000 == 0 {
			x[i] = 0
		}
	}
}

// grow returns s resized to n, reusing its array when it is large enough.
// The contents are not cleared: callers overwrite what they read.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}
