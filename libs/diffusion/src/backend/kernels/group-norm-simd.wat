;; The O(n) loops of idpo's fused GroupNorm (+ SiLU) in 128-bit SIMD, working in place on the tfjs wasm heap
;; (the memory is imported from the tfjs module). Each function walks one sample's [pixels, C] slab, channels
;; innermost, C a multiple of 4: rows of C floats, each row as C/4 vectors. Per-channel vectors (`mean`,
;; `scale`, `s1`, ...) are C floats. Every pointer is a byte offset into the memory. The per-group arithmetic
;; between the passes (O(C)) is left to the caller in float64.
;;
;; Built into libs/diffusion/src/gen/group-norm-simd-wasm.ts by `npm run generate:wasm`; the import line
;; below is replaced by a shared-memory one for tfjs's threaded binary.
(module
  (import "env" "memory" (memory 1))

  ;; out[c] = Σ_p x[p, c]
  (func (export "colSum") (param $x i32) (param $pixels i32) (param $C i32) (param $out i32)
    (local $row i32) (local $end i32) (local $o i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (memory.fill (local.get $out) (i32.const 0) (local.get $stride))
    (local.set $row (i32.const 0))
    (local.set $end (i32.mul (local.get $pixels) (local.get $stride)))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $o (i32.const 0))
        (loop $cols
          (v128.store (i32.add (local.get $out) (local.get $o))
            (f32x4.add
              (v128.load (i32.add (local.get $out) (local.get $o)))
              (v128.load (i32.add (local.get $x) (i32.add (local.get $row) (local.get $o))))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $o) (local.get $stride))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $rows))))

  ;; out[c] = Σ_p (x[p, c] − mean[c])²
  (func (export "colCenteredSq") (param $x i32) (param $pixels i32) (param $C i32) (param $mean i32) (param $out i32)
    (local $row i32) (local $end i32) (local $o i32) (local $stride i32) (local $d v128)
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (memory.fill (local.get $out) (i32.const 0) (local.get $stride))
    (local.set $row (i32.const 0))
    (local.set $end (i32.mul (local.get $pixels) (local.get $stride)))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $o (i32.const 0))
        (loop $cols
          (local.set $d
            (f32x4.sub
              (v128.load (i32.add (local.get $x) (i32.add (local.get $row) (local.get $o))))
              (v128.load (i32.add (local.get $mean) (local.get $o)))))
          (v128.store (i32.add (local.get $out) (local.get $o))
            (f32x4.add
              (v128.load (i32.add (local.get $out) (local.get $o)))
              (f32x4.mul (local.get $d) (local.get $d))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $o) (local.get $stride))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $rows))))

  ;; y[p, c] = (x[p, c] − mean[c])·scale[c] + shift[c]: centred first, so a mean far from zero costs no precision
  (func (export "affine") (param $x i32) (param $y i32) (param $pixels i32) (param $C i32) (param $mean i32) (param $scale i32) (param $shift i32)
    (local $row i32) (local $end i32) (local $o i32) (local $i i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (local.set $row (i32.const 0))
    (local.set $end (i32.mul (local.get $pixels) (local.get $stride)))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $o (i32.const 0))
        (loop $cols
          (local.set $i (i32.add (local.get $row) (local.get $o)))
          (v128.store (i32.add (local.get $y) (local.get $i))
            (f32x4.add
              (f32x4.mul
                (f32x4.sub
                  (v128.load (i32.add (local.get $x) (local.get $i)))
                  (v128.load (i32.add (local.get $mean) (local.get $o))))
                (v128.load (i32.add (local.get $scale) (local.get $o))))
              (v128.load (i32.add (local.get $shift) (local.get $o)))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $o) (local.get $stride))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $rows))))

  ;; First backward pass. u = dout·σ·(1 + y·(1 − σ)) when $silu ≠ 0 (the derivative of y·σ(y)), else dout;
  ;; dx = u; s1[c] = Σ_p u; s2[c] = Σ_p u·x̂ with x̂ = (x − mean[c])·rstd[c] (the normalised input).
  ;; $y and $sig are read only when $silu ≠ 0.
  (func (export "gradPass") (param $dout i32) (param $x i32) (param $y i32) (param $sig i32) (param $dx i32)
        (param $pixels i32) (param $C i32) (param $silu i32) (param $mean i32) (param $rstd i32) (param $s1 i32) (param $s2 i32)
    (local $row i32) (local $end i32) (local $o i32) (local $i i32) (local $stride i32)
    (local $u v128) (local $s v128) (local $xh v128) (local $one v128)
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (memory.fill (local.get $s1) (i32.const 0) (local.get $stride))
    (memory.fill (local.get $s2) (i32.const 0) (local.get $stride))
    (local.set $row (i32.const 0))
    (local.set $end (i32.mul (local.get $pixels) (local.get $stride)))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $o (i32.const 0))
        (loop $cols
          (local.set $i (i32.add (local.get $row) (local.get $o)))
          (local.set $u (v128.load (i32.add (local.get $dout) (local.get $i))))
          (if (local.get $silu)
            (then
              (local.set $s (v128.load (i32.add (local.get $sig) (local.get $i))))
              (local.set $u
                (f32x4.mul
                  (f32x4.mul (local.get $u) (local.get $s))
                  (f32x4.add
                    (local.get $one)
                    (f32x4.mul
                      (v128.load (i32.add (local.get $y) (local.get $i)))
                      (f32x4.sub (local.get $one) (local.get $s))))))))
          (v128.store (i32.add (local.get $dx) (local.get $i)) (local.get $u))
          (local.set $xh
            (f32x4.mul
              (f32x4.sub
                (v128.load (i32.add (local.get $x) (local.get $i)))
                (v128.load (i32.add (local.get $mean) (local.get $o))))
              (v128.load (i32.add (local.get $rstd) (local.get $o)))))
          (v128.store (i32.add (local.get $s1) (local.get $o))
            (f32x4.add (v128.load (i32.add (local.get $s1) (local.get $o))) (local.get $u)))
          (v128.store (i32.add (local.get $s2) (local.get $o))
            (f32x4.add
              (v128.load (i32.add (local.get $s2) (local.get $o)))
              (f32x4.mul (local.get $u) (local.get $xh))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $o) (local.get $stride))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $rows))))

  ;; Second backward pass: dx[p, c] = a[c]·dx[p, c] + b[c]·(x[p, c] − mean[c]) + k[c]
  (func (export "gradCombine") (param $dx i32) (param $x i32) (param $pixels i32) (param $C i32) (param $mean i32) (param $a i32) (param $b i32) (param $k i32)
    (local $row i32) (local $end i32) (local $o i32) (local $i i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (local.set $row (i32.const 0))
    (local.set $end (i32.mul (local.get $pixels) (local.get $stride)))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $o (i32.const 0))
        (loop $cols
          (local.set $i (i32.add (local.get $row) (local.get $o)))
          (v128.store (i32.add (local.get $dx) (local.get $i))
            (f32x4.add
              (f32x4.add
                (f32x4.mul
                  (v128.load (i32.add (local.get $a) (local.get $o)))
                  (v128.load (i32.add (local.get $dx) (local.get $i))))
                (f32x4.mul
                  (v128.load (i32.add (local.get $b) (local.get $o)))
                  (f32x4.sub
                    (v128.load (i32.add (local.get $x) (local.get $i)))
                    (v128.load (i32.add (local.get $mean) (local.get $o))))))
              (v128.load (i32.add (local.get $k) (local.get $o)))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $o) (local.get $stride))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $rows))))
)
