package schemas_test

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"

	"github.com/metaids/metaids/schemas"
)

func ExampleCodecs() {
	codecs, err := schemas.NewCodecs(nil) // the fixed id table
	if err != nil {
		panic(err)
	}
	f := schemas.Flow{
		SrcAddr: netip.MustParseAddr("2001:db8::9"),
		DstAddr: netip.MustParseAddr("192.0.2.80"),
		DstPort: 443,
		Proto:   6,
		Source:  schemas.Coord{Topic: "flows.goflow2", Partition: 0, Offset: 42},
	}
	buf, err := codecs.AppendFlow(nil, &f)
	if err != nil {
		panic(err)
	}
	fmt.Printf("magic %d, schema id %d\n", buf[0], buf[4])
	back, err := codecs.DecodeFlow(buf)
	fmt.Println(back.SrcAddr, back.DstPort, err)

	_, err = codecs.DecodeAlert(buf)
	fmt.Println(err)
	// Output:
	// magic 0, schema id 1
	// 2001:db8::9 443 <nil>
	// decode io.metaids.Alert: schema mismatch: schema id 1 is io.metaids.Flow, want io.metaids.Alert (id 2)
}

func ExampleSignModelUpdate() {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	u := schemas.ModelUpdate{Name: "metaids", Version: 2, Kind: schemas.UpdateHead}
	if err := schemas.SignModelUpdate(&u, schemas.KeyID(pub), priv); err != nil {
		panic(err)
	}
	trusted := map[string]ed25519.PublicKey{schemas.KeyID(pub): pub}
	fmt.Println(schemas.VerifyModelUpdate(&u, trusted))

	u.Version = 3 // tampered
	fmt.Println(schemas.VerifyModelUpdate(&u, trusted) != nil)
	// Output:
	// <nil>
	// true
}
