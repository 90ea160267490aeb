package model

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/metaids/metaids/schemas"
)

// Campaign is an analyst's verdict on one host's attack: the flows of Host
// that the head flags as an attack, from the campaign's first labelled flow
// on and each within IdleNs of the previous one so named, are named Class,
// whatever attack family the head would name them.
//
// It exists because a few labels are a few kinds of flow. An analyst who
// labels the first ten flows of a Slowloris run has named the run, but ten
// flows of one kind cannot teach the head the run's other kinds, which the
// head keeps calling by the sibling family they resemble (CIC-IDS2017: 0.035
// of Slowloris named as itself after ten labels, the rest Slowhttptest). A
// SOC groups alerts by attacker the same way. A campaign only renames flows
// the head already alerts on, so it cannot raise or lower an alert, and it
// ends at the host's first pause longer than IdleNs, so that a later attack
// from the same address is named by the head again.
type Campaign struct {
	Host    string // the flow's host, as features.Host writes it
	Class   int    // index into the model's classes; never benign
	FirstNs int64  // end of the first labelled flow
	LastNs  int64  // end of the last labelled flow
	IdleNs  int64  // the longest pause between named flows that does not end it
}

// MaxCampaigns bounds the campaigns a model carries, the newest kept, so that
// an update stays one record however long the adapter runs.
const MaxCampaigns = 256

// TensorCampaigns carries Model.Campaigns in full and head updates, a row
// per campaign, absent when there are none. Like TensorGateBenign it is a
// tensor so that the record's schema, and every record already on the
// compacted models topic, stays as it is. A row is the host's address as 8
// big-endian 16-bit words, the class, then FirstNs, LastNs and IdleNs as
// three 21-bit limbs each, most significant first: every value an integer
// a float32 holds exactly.
const TensorCampaigns = "campaigns"

const (
	campaignCols = 8 + 1 + 3*3
	limbBits     = 21
	limbMask     = 1<<limbBits - 1
)

// campaignsTensor returns the tensor of cs, or nil when there are none.
func campaignsTensor(cs []Campaign) (*schemas.Tensor, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	t := &schemas.Tensor{Name: TensorCampaigns, Rows: int32(len(cs)), Cols: campaignCols, Data: make([]float32, 0, len(cs)*campaignCols)}
	for i, c := range cs {
		a, err := netip.ParseAddr(c.Host)
		if err != nil {
			return nil, fmt.Errorf("model update: campaign %d: %w: host %q is not an address", i, ErrInvalid, c.Host)
		}
		b := a.As16()
		for j := 0; j < 16; j += 2 {
			t.Data = append(t.Data, float32(uint16(b[j])<<8|uint16(b[j+1])))
		}
		t.Data = append(t.Data, float32(c.Class))
		for _, v := range [3]int64{c.FirstNs, c.LastNs, c.IdleNs} {
			if v < 0 {
				return nil, fmt.Errorf("model update: campaign %d: %w: negative time %d", i, ErrInvalid, v)
			}
			t.Data = append(t.Data, float32(v>>(2*limbBits)&limbMask), float32(v>>limbBits&limbMask), float32(v&limbMask))
		}
	}
	return t, nil
}

// takeCampaigns removes the campaigns tensor from tensors and returns the
// campaigns, checked against the class count c.
func takeCampaigns(tensors []schemas.Tensor, c int) ([]schemas.Tensor, []Campaign, error) {
	t, rest, err := takeRows(tensors, TensorCampaigns, MaxCampaigns, campaignCols)
	if t == nil || err != nil {
		return rest, nil, err
	}
	bad := func(i int, what string) error {
		return fmt.Errorf("model update: tensor %q: %w at row %d: %s", TensorCampaigns, ErrInvalid, i, what)
	}
	// word reads an integer in [0, limit], the only values a row holds.
	word := func(v float32, limit int64) (int64, bool) {
		if !finite32(v) || v < 0 || float32(int64(v)) != v || int64(v) > limit {
			return 0, false
		}
		return int64(v), true
	}
	cs := make([]Campaign, int(t.Rows))
	for i := range cs {
		row := t.Data[i*campaignCols : (i+1)*campaignCols]
		var b [16]byte
		for j := range 8 {
			w, ok := word(row[j], 0xffff)
			if !ok {
				return nil, nil, bad(i, "address word out of range")
			}
			b[2*j], b[2*j+1] = byte(w>>8), byte(w)
		}
		k, ok := word(row[8], int64(c-1))
		if !ok || k == 0 {
			return nil, nil, bad(i, fmt.Sprintf("class %v of %d, or benign", row[8], c))
		}
		var ts [3]int64
		for n := range ts {
			for l := range 3 {
				w, ok := word(row[9+3*n+l], limbMask)
				if !ok || (l == 0 && w>>(63-2*limbBits) != 0) {
					return nil, nil, bad(i, "time limb out of range")
				}
				ts[n] = ts[n]<<limbBits | w
			}
		}
		if ts[1] < ts[0] {
			return nil, nil, bad(i, "last labelled flow before the first")
		}
		cs[i] = Campaign{Host: netip.AddrFrom16(b).Unmap().String(), Class: int(k), FirstNs: ts[0], LastNs: ts[1], IdleNs: ts[2]}
	}
	return rest, cs, nil
}

// dormantBias is the bias of a class the head never names (AddDormantClass):
// its probability underflows to zero whatever the embedding.
const dormantBias = -1e4

// AddDormantClass adds a class the head never names: zero weights and a
// bias far below any logit. Only a Campaign names it. The adapter adds a new
// family this way when every fit of its head row would cost a known class
// (see adapter.fitHead); its next labels give it a real row
// (SetClassFromPrototype).
func (m *Model) AddDormantClass(name string, threshold float32) (int, error) {
	k, err := m.AddClass(name, make([]float32, m.EmbeddingDim()), threshold)
	if err != nil {
		return 0, err
	}
	d := m.EmbeddingDim()
	clear(m.P.ClsW[k*d : (k+1)*d])
	m.P.ClsB[k] = dormantBias
	m.WeightsChanged()
	return k, nil
}

// Dormant reports whether class k's head row is one AddDormantClass made.
func (m *Model) Dormant(k int) bool {
	return k >= 0 && k < len(m.P.ClsB) && m.P.ClsB[k] <= dormantBias/2
}

// CampaignBook applies a model's campaigns to the alerting flows of a
// stream, in each host's order, remembering how far each campaign has run.
// The scorer keeps one per features partition; metaids eval keeps one to
// mirror it. It is not safe for concurrent use.
type CampaignBook struct {
	runs  map[string]*campaignRun
	seeds map[string][2]int64 // restored runs (Seed) no Sync has taken yet
}

type campaignRun struct {
	c    Campaign
	last int64 // end of the newest flow named by it, the labels' included
}

// Sync takes the campaigns of the model now serving. A campaign it already
// follows (same host, class and first labelled flow) keeps how far it has
// run; one no longer in cs is dropped.
func (b *CampaignBook) Sync(cs []Campaign) {
	old := b.runs
	b.runs = make(map[string]*campaignRun, len(cs))
	for _, c := range cs {
		r := &campaignRun{c: c, last: c.LastNs}
		if o := old[c.Host]; o != nil && o.c.Class == c.Class && o.c.FirstNs == c.FirstNs {
			r.last = max(r.last, o.last)
		}
		if sd, ok := b.seeds[c.Host]; ok && sd[0] == c.FirstNs {
			r.last = max(r.last, sd[1])
		}
		b.runs[c.Host] = r
	}
	b.seeds = nil
}

// Run returns how far host's campaign has run: the end of its first
// labelled flow, which identifies it, and of the newest flow it named. The
// scorer checkpoints it with the host's state.
func (b *CampaignBook) Run(host string) (first, last int64, ok bool) {
	r := b.runs[host]
	if r == nil {
		return 0, 0, false
	}
	return r.c.FirstNs, r.last, true
}

// Seed restores a run that Run reported, from a checkpoint: the host's
// campaign, if it is the one whose first labelled flow ended at first,
// has run to last. It applies at once to a campaign followed already, or
// at the next Sync.
func (b *CampaignBook) Seed(host string, first, last int64) {
	if r := b.runs[host]; r != nil {
		if r.c.FirstNs == first {
			r.last = max(r.last, last)
		}
		return
	}
	if b.seeds == nil {
		b.seeds = map[string][2]int64{}
	}
	b.seeds[host] = [2]int64{first, last}
}

// Attribute returns the class to name a flow of host ending at endNs that
// the head names class (≤ 0: no alert from the head, or benign): the
// campaign's class if the host's campaign covers the flow, which then
// extends the campaign, and class otherwise.
func (b *CampaignBook) Attribute(host string, endNs int64, class int) int {
	if class <= 0 || len(b.runs) == 0 {
		return class
	}
	r := b.runs[host]
	if r == nil || !r.c.covers(endNs, r.last) {
		return class
	}
	r.last = max(r.last, endNs)
	return r.c.Class
}

// covers reports whether a flow ending at endNs belongs to the campaign
// whose newest named flow ended at last. Flows may end out of order (a long
// flow ends after a short one that started later), so one ending before
// last belongs as long as it is not before the campaign.
func (c *Campaign) covers(endNs, last int64) bool {
	return endNs >= c.FirstNs-c.IdleNs && endNs-last <= c.IdleNs
}

// Covers reports whether a flow of host ending at endNs falls in one of cs
// as the labels left it, with no later flow extending it: what the
// adapter's gate checks its held-back labels against. It returns the class,
// or −1.
func Covers(cs []Campaign, host string, endNs int64) int {
	for i := range cs {
		if c := &cs[i]; c.Host == host && c.covers(endNs, c.LastNs) {
			return c.Class
		}
	}
	return -1
}

func cloneCampaigns(cs []Campaign) []Campaign {
	if cs == nil {
		return nil
	}
	return slices.Clone(cs)
}
