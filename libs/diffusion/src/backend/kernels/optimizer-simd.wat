;; The optimiser's per-element updates in 128-bit SIMD, in place on the tfjs wasm heap (the memory is imported
;; from the tfjs module), one parameter tensor per call: n floats at each pointer (byte offsets).
;; The order of operations is exactly adamw.ts's and ema.ts's tensor ops, so the results are the same floats.
;; The moments and the EMA are updated in place; the weights go to a new buffer, because the wasm backend keeps
;; XNNPACK operators with packed copies of a weight keyed by its tensor (a weight changed in place would be
;; computed with stale packed values).
;;
;; Built into libs/diffusion/src/gen/optimizer-simd-wasm.ts by `npm run generate:wasm`; the import line below
;; is replaced by a shared-memory one for tfjs's threaded binary.
(module
  (import "env" "memory" (memory 1))

  ;; AdamW: m ← m·β1 + g·c1; v ← v·β2 + g²·c2; out ← p·decay − (m·s1) / (√v / s2 + ε)
  ;; (c1 = 1 − β1, c2 = 1 − β2, s1 = lr / (1 − β1^k), s2 = √(1 − β2^k), decay = 1 − lr·weightDecay)
  (func (export "adamw") (param $p i32) (param $out i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
        (param $b1 f32) (param $c1 f32) (param $b2 f32) (param $c2 f32) (param $s1 f32) (param $s2 f32)
        (param $eps f32) (param $decay f32)
    (local $o i32) (local $vend i32) (local $end i32)
    (local $gv v128) (local $mv v128) (local $vv v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $vend (i32.and (local.get $end) (i32.const -16)))
    (local.set $o (i32.const 0))
    (block $vec_done
      (loop $vec
        (br_if $vec_done (i32.ge_u (local.get $o) (local.get $vend)))
        (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
        (local.set $mv
          (f32x4.add
            (f32x4.mul (v128.load (i32.add (local.get $m) (local.get $o))) (f32x4.splat (local.get $b1)))
            (f32x4.mul (local.get $gv) (f32x4.splat (local.get $c1)))))
        (local.set $vv
          (f32x4.add
            (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $o))) (f32x4.splat (local.get $b2)))
            (f32x4.mul (f32x4.mul (local.get $gv) (local.get $gv)) (f32x4.splat (local.get $c2)))))
        (v128.store (i32.add (local.get $m) (local.get $o)) (local.get $mv))
        (v128.store (i32.add (local.get $v) (local.get $o)) (local.get $vv))
        (v128.store (i32.add (local.get $out) (local.get $o))
          (f32x4.sub
            (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o))) (f32x4.splat (local.get $decay)))
            (f32x4.div
              (f32x4.mul (local.get $mv) (f32x4.splat (local.get $s1)))
              (f32x4.add
                (f32x4.div (f32x4.sqrt (local.get $vv)) (f32x4.splat (local.get $s2)))
                (f32x4.splat (local.get $eps))))))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vec)))
    (block $tail_done
      (loop $tail
        (br_if $tail_done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $gs (f32.load (i32.add (local.get $g) (local.get $o))))
        (local.set $ms
          (f32.add
            (f32.mul (f32.load (i32.add (local.get $m) (local.get $o))) (local.get $b1))
            (f32.mul (local.get $gs) (local.get $c1))))
        (local.set $vs
          (f32.add
            (f32.mul (f32.load (i32.add (local.get $v) (local.get $o))) (local.get $b2))
            (f32.mul (f32.mul (local.get $gs) (local.get $gs)) (local.get $c2))))
        (f32.store (i32.add (local.get $m) (local.get $o)) (local.get $ms))
        (f32.store (i32.add (local.get $v) (local.get $o)) (local.get $vs))
        (f32.store (i32.add (local.get $out) (local.get $o))
          (f32.sub
            (f32.mul (f32.load (i32.add (local.get $p) (local.get $o))) (local.get $decay))
            (f32.div
              (f32.mul (local.get $ms) (local.get $s1))
              (f32.add (f32.div (f32.sqrt (local.get $vs)) (local.get $s2)) (local.get $eps)))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $tail))))

  ;; EMA: shadow ← shadow·d + p·c (c = 1 − d)
  (func (export "ema") (param $shadow i32) (param $p i32) (param $n i32) (param $d f32) (param $c f32)
    (local $o i32) (local $vend i32) (local $end i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $vend (i32.and (local.get $end) (i32.const -16)))
    (local.set $o (i32.const 0))
    (block $vec_done
      (loop $vec
        (br_if $vec_done (i32.ge_u (local.get $o) (local.get $vend)))
        (v128.store (i32.add (local.get $shadow) (local.get $o))
          (f32x4.add
            (f32x4.mul (v128.load (i32.add (local.get $shadow) (local.get $o))) (f32x4.splat (local.get $d)))
            (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o))) (f32x4.splat (local.get $c)))))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vec)))
    (block $tail_done
      (loop $tail
        (br_if $tail_done (i32.ge_u (local.get $o) (local.get $end)))
        (f32.store (i32.add (local.get $shadow) (local.get $o))
          (f32.add
            (f32.mul (f32.load (i32.add (local.get $shadow) (local.get $o))) (local.get $d))
            (f32.mul (f32.load (i32.add (local.get $p) (local.get $o))) (local.get $c))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $tail))))
)
