// Command asmgen writes model/kernel_amd64.s, the step's AVX2 and AVX-512
// kernels: register-blocked SGEMM micro-kernels and the fused LSTM gate math
// with a vectorised exp. The kernels are regular but long (every register of
// a tile is spelled out), so they are generated rather than typed; run
//
//	go generate ./model
//
// after changing this file and commit the output. Nothing at run time needs
// this program.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
)

type gen struct{ bytes.Buffer }

func (g *gen) op(format string, args ...any) { fmt.Fprintf(g, "\t"+format+"\n", args...) }
func (g *gen) label(l string)                { fmt.Fprintf(g, "%s:\n", l) }

// isa describes one vector extension.
type isa struct {
	name   string // AVX2 or AVX512
	reg    string // Y or Z
	bytes  int    // vector width in bytes
	lanes  int    // float32 lanes
	nregs  int    // vector registers
	constW int    // bytes between consecutive constants in the table passed in
}

var (
	avx2   = isa{"AVX2", "Y", 32, 8, 16, 32}
	avx512 = isa{"AVX512", "Z", 64, 16, 32, 4}
)

func (a isa) r(i int) string { return fmt.Sprintf("%s%d", a.reg, i) }

// gemm writes a micro-kernel computing an mr×(nv·lanes) tile for each of
// `panels` consecutive packed panels:
//
//	C[i, p·w+j] = bias[p·w+j] + Σ_l A[i, l]·Bp[l, j]
//
// A is row-major with byte stride lda; Bp is panel-major, each panel k rows
// of w = nv·lanes floats; C is row-major with byte stride ldc.
//
// func name(k int, a *float32, lda int, b *float32, bias *float32, c *float32, ldc int, panels int)
func (g *gen) gemm(a isa, mr, nv int) {
	name := fmt.Sprintf("gemm%s_%dx%d", a.name, mr, nv*a.lanes)
	w := nv * a.bytes
	nacc := mr * nv
	if nacc+nv+1 > a.nregs || mr > 12 {
		log.Fatalf("%s: does not fit the registers", name)
	}
	breg := func(v int) string { return a.r(nacc + v) }
	bc := func(i int) string { return a.r(nacc + nv + i%max(1, a.nregs-nacc-nv)) }
	acc := func(row, v int) string { return a.r(row*nv + v) }
	fmt.Fprintf(g, "// func %s(k int, a *float32, lda int, b *float32, bias *float32, c *float32, ldc int, panels int)\n", name)
	fmt.Fprintf(g, "TEXT ·%s(SB), NOSPLIT, $0-64\n", name)
	g.op("MOVQ a+8(FP), DX")
	g.op("MOVQ lda+16(FP), R8")
	g.op("SHLQ $2, R8")
	g.op("LEAQ (R8)(R8*2), R9")
	g.op("LEAQ (R8)(R8*4), R10")
	g.op("MOVQ b+24(FP), BX")
	g.op("MOVQ bias+32(FP), R12")
	g.op("MOVQ c+40(FP), CX")
	g.op("MOVQ ldc+48(FP), R11")
	g.op("SHLQ $2, R11")
	g.op("MOVQ panels+56(FP), R13")
	g.label(name + "_panel")
	for v := range nv {
		g.op("VMOVUPS %d(R12), %s", v*a.bytes, breg(v))
	}
	for row := range mr {
		for v := range nv {
			g.op("VMOVAPS %s, %s", breg(v), acc(row, v))
		}
	}
	g.op("MOVQ DX, SI")
	if mr > 6 {
		g.op("LEAQ (DX)(R9*2), DI") // row 6
	}
	g.op("MOVQ k+0(FP), AX")
	g.label(name + "_k")
	for v := range nv {
		g.op("VMOVUPS %d(BX), %s", v*a.bytes, breg(v))
	}
	rowAddr := []string{"(%s)", "(%s)(R8*1)", "(%s)(R8*2)", "(%s)(R9*1)", "(%s)(R8*4)", "(%s)(R10*1)"}
	for row := range mr {
		base := "SI"
		if row >= 6 {
			base = "DI"
		}
		b := bc(row)
		g.op("VBROADCASTSS "+rowAddr[row%6]+", %s", base, b)
		for v := range nv {
			g.op("VFMADD231PS %s, %s, %s", breg(v), b, acc(row, v))
		}
	}
	g.op("ADDQ $%d, BX", w)
	g.op("ADDQ $4, SI")
	if mr > 6 {
		g.op("ADDQ $4, DI")
	}
	g.op("DECQ AX")
	g.op("JNZ %s_k", name)
	g.op("MOVQ CX, SI")
	for row := range mr {
		for v := range nv {
			g.op("VMOVUPS %s, %d(SI)", acc(row, v), v*a.bytes)
		}
		if row < mr-1 {
			g.op("ADDQ R11, SI")
		}
	}
	g.op("ADDQ $%d, CX", w)
	g.op("ADDQ $%d, R12", w)
	g.op("DECQ R13")
	g.op("JNZ %s_panel", name)
	g.op("VZEROUPPER")
	g.op("RET")
	g.WriteString("\n")
}

// Constant indices in the table the Go side passes (lstmConsts).
const (
	cLo = iota
	cHi
	cLog2e
	cLn2Hi
	cLn2Lo
	cP0
	cP1
	cP2
	cP3
	cP4
	cP5
	cOne
	cTwo
	cNegOne
	nConsts
)

// lstm writes the fused gate kernel:
//
//	i, f, o = σ(·), g = tanh(·); c' = f·c + i·g; h' = o·tanh(c')
//
// for `rows` hosts of h units (h a multiple of the lanes). g rows have byte
// stride ldg and hold the pre-activation blocks i, f, g, o; c and hout are
// h-strided; z rows have byte stride ldz and receive h' in their first h
// elements.
//
// func name(rows, h int, gates *float32, ldg int, c, hout, z *float32, ldz int, consts *float32)
func (g *gen) lstm(a isa) {
	name := "lstm" + a.name
	fmt.Fprintf(g, "// func %s(rows, h int, gates *float32, ldg int, c, hout, z *float32, ldz int, consts *float32)\n", name)
	fmt.Fprintf(g, "TEXT ·%s(SB), NOSPLIT, $0-72\n", name)
	g.op("MOVQ rows+0(FP), AX")
	g.op("MOVQ gates+16(FP), SI")
	g.op("MOVQ c+32(FP), DI")
	g.op("MOVQ hout+40(FP), R9")
	g.op("MOVQ z+48(FP), R10")
	g.op("MOVQ consts+64(FP), R12")
	g.op("MOVQ h+8(FP), R13")
	g.op("SHLQ $2, R13")
	// Constants: in registers 16.. on AVX-512, from memory on AVX2 (whose
	// 16 registers the four interleaved gate chains need).
	k := func(i int) string {
		if a.reg == "Z" {
			return a.r(16 + i)
		}
		return fmt.Sprintf("%d(R12)", i*a.constW)
	}
	if a.reg == "Z" {
		for i := range nConsts {
			g.op("VBROADCASTSS %d(R12), %s", i*a.constW, a.r(16+i))
		}
	}
	shift := map[int]int{8: 3, 16: 4}[a.lanes]
	g.label(name + "_row")
	g.op("MOVQ SI, CX")
	g.op("LEAQ (SI)(R13*2), DX")
	g.op("MOVQ R10, R8")
	g.op("MOVQ R13, BX")
	g.op("SHRQ $%d, BX", shift+2)
	g.label(name + "_group")
	x := []string{a.r(0), a.r(1), a.r(2), a.r(3)}
	n := []string{a.r(4), a.r(5), a.r(6), a.r(7)}
	p := []string{a.r(8), a.r(9), a.r(10), a.r(11)}
	t := []string{a.r(12), a.r(13), a.r(14), a.r(15)}
	g.op("VMOVUPS (CX), %s", x[0])
	g.op("VMOVUPS (CX)(R13*1), %s", x[1])
	g.op("VMOVUPS (DX), %s", x[2])
	g.op("VMOVUPS (DX)(R13*1), %s", x[3])
	// σ(x) = 1/(1+e^−x); tanh(x) = 1 − 2/(1+e^2x).
	g.op("VMULPS %s, %s, %s", k(cNegOne), x[0], x[0])
	g.op("VMULPS %s, %s, %s", k(cNegOne), x[1], x[1])
	g.op("VMULPS %s, %s, %s", k(cTwo), x[2], x[2])
	g.op("VMULPS %s, %s, %s", k(cNegOne), x[3], x[3])
	g.exp(a, k, x, n, p, t)
	g.recip1p(a, k, p, t, n) // p ← 1/(1+p)
	// g gate: tanh = 1 − 2·p
	tg := g.oneMinusTwice(a, k, p[2], x[2])
	// c' = f·c + i·g
	g.op("VMULPS %s, %s, %s", tg, p[0], p[0])
	g.op("VFMADD231PS (DI), %s, %s", p[1], p[0])
	g.op("VMOVUPS %s, (DI)", p[0])
	// tanh(c')
	g.op("VMULPS %s, %s, %s", k(cTwo), p[0], x[0])
	g.exp(a, k, x[:1], n[:1], p[:1], t[:1])
	g.recip1p(a, k, p[:1], t[:1], n[:1])
	tc := g.oneMinusTwice(a, k, p[0], x[0])
	g.op("VMULPS %s, %s, %s", p[3], tc, tc)
	g.op("VMOVUPS %s, (R9)", tc)
	g.op("VMOVUPS %s, (R8)", tc)
	for _, r := range []string{"CX", "DX", "DI", "R9", "R8"} {
		g.op("ADDQ $%d, %s", a.bytes, r)
	}
	g.op("DECQ BX")
	g.op("JNZ %s_group", name)
	g.op("ADDQ ldg+24(FP), SI")
	g.op("ADDQ ldz+56(FP), R10")
	g.op("DECQ AX")
	g.op("JNZ %s_row", name)
	g.op("VZEROUPPER")
	g.op("RET")
	g.WriteString("\n")
}

// oneMinusTwice computes 1 − 2·p, in p on AVX-512 and in tmp on AVX2
// (whose constants are in memory, and an instruction takes one memory
// operand), and returns the register holding it.
func (g *gen) oneMinusTwice(a isa, k func(int) string, p, tmp string) string {
	if a.reg == "Z" {
		g.op("VFNMADD213PS %s, %s, %s", k(cOne), k(cTwo), p)
		return p
	}
	g.op("VMOVUPS %s, %s", k(cOne), tmp)
	g.op("VFNMADD231PS %s, %s, %s", k(cTwo), p, tmp)
	return tmp
}

// exp sets p[i] = e^x[i] for each chain i, clobbering x, n and t: the
// algorithm of expf in mathx.go, chains interleaved for instruction-level
// parallelism.
func (g *gen) exp(a isa, k func(int) string, x, n, p, t []string) {
	each := func(format string, regs ...[]string) {
		for i := range x {
			args := make([]any, len(regs))
			for j, r := range regs {
				args[j] = r[i]
			}
			g.op(format, args...)
		}
	}
	each("VMAXPS "+k(cLo)+", %s, %s", x, x)
	each("VMINPS "+k(cHi)+", %s, %s", x, x)
	each("VMULPS "+k(cLog2e)+", %s, %s", x, n)
	if a.reg == "Z" {
		each("VRNDSCALEPS $0, %s, %s", n, n)
	} else {
		each("VROUNDPS $0, %s, %s", n, n)
	}
	each("VFNMADD231PS "+k(cLn2Hi)+", %s, %s", n, x)
	each("VFNMADD231PS "+k(cLn2Lo)+", %s, %s", n, x)
	if a.reg == "Z" {
		each("VMOVAPS "+k(cP0)+", %s", p)
	} else {
		each("VMOVUPS "+k(cP0)+", %s", p)
	}
	for c := cP1; c <= cP5; c++ {
		each("VFMADD213PS "+k(c)+", %s, %s", x, p)
	}
	each("VMULPS %s, %s, %s", x, x, t)
	each("VFMADD213PS %s, %s, %s", x, t, p)
	each("VADDPS "+k(cOne)+", %s, %s", p, p)
	if a.reg == "Z" {
		each("VSCALEFPS %s, %s, %s", n, p, p)
	} else {
		each("VCVTPS2DQ %s, %s", n, n)
		each("VPSLLD $23, %s, %s", n, n)
		each("VPADDD %s, %s, %s", n, p, p)
	}
}

// recip1p sets p[i] = 1/(1+p[i]) with the hardware reciprocal estimate and
// one Newton step (about 2^-23 relative error on AVX2, better on AVX-512),
// clobbering t and u.
func (g *gen) recip1p(a isa, k func(int) string, p, t, u []string) {
	rcp := "VRCPPS"
	if a.reg == "Z" {
		rcp = "VRCP14PS"
	}
	for i := range p {
		g.op("VADDPS %s, %s, %s", k(cOne), p[i], p[i])
	}
	for i := range p {
		g.op("%s %s, %s", rcp, p[i], t[i])
	}
	// e = 1 − d·r; r' = r + r·e
	for i := range p {
		g.op("VFNMADD213PS %s, %s, %s", k(cOne), t[i], p[i])
	}
	for i := range p {
		g.op("VFMADD213PS %s, %s, %s", t[i], t[i], p[i])
	}
	_ = u
}

// expArray writes the in-place exponential over n floats (n a multiple of
// the lanes): the softmax's exponentials for a whole chunk of hosts at once.
//
// func name(n int, x *float32, consts *float32)
func (g *gen) expArray(a isa) {
	name := "exp" + a.name
	fmt.Fprintf(g, "// func %s(n int, x *float32, consts *float32)\n", name)
	fmt.Fprintf(g, "TEXT ·%s(SB), NOSPLIT, $0-24\n", name)
	g.op("MOVQ n+0(FP), BX")
	g.op("MOVQ x+8(FP), SI")
	g.op("MOVQ consts+16(FP), R12")
	k := func(i int) string {
		if a.reg == "Z" {
			return a.r(16 + i)
		}
		return fmt.Sprintf("%d(R12)", i*a.constW)
	}
	if a.reg == "Z" {
		for i := range nConsts {
			g.op("VBROADCASTSS %d(R12), %s", i*a.constW, a.r(16+i))
		}
	}
	g.op("SHRQ $%d, BX", map[int]int{8: 3, 16: 4}[a.lanes])
	g.label(name + "_loop")
	g.op("VMOVUPS (SI), %s", a.r(0))
	g.exp(a, k, []string{a.r(0)}, []string{a.r(1)}, []string{a.r(2)}, []string{a.r(3)})
	g.op("VMOVUPS %s, (SI)", a.r(2))
	g.op("ADDQ $%d, SI", a.bytes)
	g.op("DECQ BX")
	g.op("JNZ %s_loop", name)
	g.op("VZEROUPPER")
	g.op("RET")
	g.WriteString("\n")
}

// norm writes the input normalisation for rows raw feature vectors of f
// values (f a multiple of the lanes): a[r, j] = (x[r, j] − mean[j])·inv[j],
// with a non-finite result replaced by 0, and returns how many results were
// finite. x rows are f-strided; a rows have byte stride lda.
//
// func name(rows, f int, x, mean, inv, a *float32, lda int) int
func (g *gen) norm(a isa) {
	name := "norm" + a.name
	fmt.Fprintf(g, "// func %s(rows, f int, x, mean, inv, a *float32, lda int) int\n", name)
	fmt.Fprintf(g, "TEXT ·%s(SB), NOSPLIT, $0-64\n", name)
	g.op("MOVQ rows+0(FP), AX")
	g.op("MOVQ x+16(FP), SI")
	g.op("MOVQ a+40(FP), R10")
	g.op("XORQ R11, R11") // finite count
	g.op("VXORPS %s, %s, %s", a.r(15), a.r(15), a.r(15))
	g.label(name + "_row")
	g.op("MOVQ mean+24(FP), CX")
	g.op("MOVQ inv+32(FP), DX")
	g.op("MOVQ R10, DI")
	g.op("MOVQ f+8(FP), BX")
	g.op("SHRQ $%d, BX", map[int]int{8: 3, 16: 4}[a.lanes])
	g.label(name + "_group")
	g.op("VMOVUPS (SI), %s", a.r(0))
	g.op("VSUBPS (CX), %s, %s", a.r(0), a.r(0))
	g.op("VMULPS (DX), %s, %s", a.r(0), a.r(0))
	g.op("VSUBPS %s, %s, %s", a.r(0), a.r(0), a.r(1)) // 0 when finite, NaN otherwise
	if a.reg == "Z" {
		g.op("VCMPPS $0, %s, %s, K1", a.r(15), a.r(1)) // EQ_OQ: false for NaN
		g.op("VMOVUPS.Z %s, K1, %s", a.r(0), a.r(0))
		g.op("KMOVW K1, R12")
	} else {
		g.op("VCMPPS $0, %s, %s, %s", a.r(15), a.r(1), a.r(2))
		g.op("VANDPS %s, %s, %s", a.r(2), a.r(0), a.r(0))
		g.op("VMOVMSKPS %s, R12", a.r(2))
	}
	g.op("POPCNTL R12, R12")
	g.op("ADDQ R12, R11")
	g.op("VMOVUPS %s, (DI)", a.r(0))
	for _, r := range []string{"SI", "CX", "DX", "DI"} {
		g.op("ADDQ $%d, %s", a.bytes, r)
	}
	g.op("DECQ BX")
	g.op("JNZ %s_group", name)
	g.op("ADDQ lda+48(FP), R10")
	g.op("DECQ AX")
	g.op("JNZ %s_row", name)
	g.op("MOVQ R11, ret+56(FP)")
	g.op("VZEROUPPER")
	g.op("RET")
	g.WriteString("\n")
}

// sqerr writes, for rows rows, out[r] = Σ_j (p[r, j] − q[r, j])² over f
// values (f a multiple of the lanes); p and q rows have byte strides ldp and
// ldq. It is the anomaly score's numerator.
//
// func name(rows, f int, p *float32, ldp int, q *float32, ldq int, out *float32)
func (g *gen) sqerr(a isa) {
	name := "sqerr" + a.name
	fmt.Fprintf(g, "// func %s(rows, f int, p *float32, ldp int, q *float32, ldq int, out *float32)\n", name)
	fmt.Fprintf(g, "TEXT ·%s(SB), NOSPLIT, $0-56\n", name)
	g.op("MOVQ rows+0(FP), AX")
	g.op("MOVQ p+16(FP), R8")
	g.op("MOVQ q+32(FP), R9")
	g.op("MOVQ out+48(FP), R10")
	g.label(name + "_row")
	g.op("MOVQ R8, SI")
	g.op("MOVQ R9, DI")
	g.op("VXORPS %s, %s, %s", a.r(0), a.r(0), a.r(0))
	g.op("MOVQ f+8(FP), BX")
	g.op("SHRQ $%d, BX", map[int]int{8: 3, 16: 4}[a.lanes])
	g.label(name + "_group")
	g.op("VMOVUPS (SI), %s", a.r(1))
	g.op("VSUBPS (DI), %s, %s", a.r(1), a.r(1))
	g.op("VFMADD231PS %s, %s, %s", a.r(1), a.r(1), a.r(0))
	g.op("ADDQ $%d, SI", a.bytes)
	g.op("ADDQ $%d, DI", a.bytes)
	g.op("DECQ BX")
	g.op("JNZ %s_group", name)
	// Horizontal sum of the accumulator.
	if a.reg == "Z" {
		g.op("VEXTRACTF64X4 $1, Z0, Y1")
		g.op("VADDPS Y1, Y0, Y0")
	}
	g.op("VEXTRACTF128 $1, Y0, X1")
	g.op("VADDPS X1, X0, X0")
	g.op("VMOVHLPS X0, X0, X1")
	g.op("VADDPS X1, X0, X0")
	g.op("VMOVSHDUP X0, X1")
	g.op("VADDSS X1, X0, X0")
	g.op("VMOVSS X0, (R10)")
	g.op("ADDQ ldp+24(FP), R8")
	g.op("ADDQ ldq+40(FP), R9")
	g.op("ADDQ $4, R10")
	g.op("DECQ AX")
	g.op("JNZ %s_row", name)
	g.op("VZEROUPPER")
	g.op("RET")
	g.WriteString("\n")
}

func main() {
	out := flag.String("out", "kernel_amd64.s", "output file")
	flag.Parse()
	var g gen
	g.WriteString("// Code generated by model/internal/asmgen; DO NOT EDIT.\n\n")
	g.WriteString("//go:build amd64 && !purego\n\n")
	g.WriteString("#include \"textflag.h\"\n\n")
	g.gemm(avx2, 6, 2)
	g.gemm(avx512, 12, 2)
	g.gemm(avx512, 12, 1)
	g.lstm(avx2)
	g.lstm(avx512)
	g.expArray(avx2)
	g.expArray(avx512)
	g.norm(avx2)
	g.norm(avx512)
	g.sqerr(avx2)
	g.sqerr(avx512)
	if err := os.WriteFile(*out, g.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
