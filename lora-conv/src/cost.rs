//! A cost model of the two forward forms of an adapted conv, which [`ForwardMode::Auto`] uses
//! to pick one per layer and per call.
//!
//! Each form is a short list of operations: convolutions (kxk, 1x1 or depthwise), small matmuls
//! (recomposing `ΔW`) and element-wise passes. A convolution costs its multiply-adds divided by
//! a measured rate for its kind and pass (forward, input gradient, weight gradient), plus the
//! bytes it reads and writes at a measured bandwidth, plus a fixed per-operation overhead. In
//! training:
//! - weight-space runs the full conv's forward, its input gradient (unless the input needs
//!   none, as for a first layer) and its **weight gradient**, then the recomposition's
//!   gradients;
//! - bypass runs the frozen base conv's forward and input gradient only (burn's autodiff skips
//!   the weight gradient of an untracked weight), plus every pass of the branch's small convs.
//!
//! [`CostModel::default`] holds rates calibrated on the development machine (2 cores, burn
//! `flex` with `rayon` + `simd`); `./scripts/bench.sh calibrate` measures them on
//! another machine and prints a replacement. The benches check, on every benched shape, that
//! `auto` stays within 10% of the faster form.

use serde::{Deserialize, Serialize};

use crate::adapter::{BranchOp, OpKind};
use crate::forward::ForwardMode;
use crate::geometry::ConvGeometry;
use crate::variant::ConvVariant;

/// Throughput of one kind of convolution, per pass, in multiply-adds ×2 (FLOP) per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConvRates {
    /// The forward conv.
    pub forward: f64,
    /// The gradient with respect to the input.
    pub input_grad: f64,
    /// The gradient with respect to the weight.
    pub weight_grad: f64,
}

/// Measured rates of the operations a conv adapter runs on one device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Convolutions whose kernel has more than one tap (`K > 1`), one group.
    pub spatial: ConvRates,
    /// The same with at most [`NARROW`] input or output channels (an adapter's kxk down conv,
    /// or Tucker-2's r->r core): `flex` runs them several times below the wide rate (64->4 at
    /// 56x56 reaches about a sixth of 64->64's forward rate).
    pub narrow: ConvRates,
    /// 1x..x1 channel mixes. A branch runs them as batched matmuls
    /// ([`crate::functional::conv::pointwise`]); this is their rate at an adapter's widths.
    pub pointwise: ConvRates,
    /// Depthwise convolutions (one input channel per group).
    pub depthwise: ConvRates,
    /// Matmuls of the recomposition, FLOP/s.
    pub matmul: f64,
    /// Element-wise passes, bytes read plus written per second.
    pub bandwidth: f64,
    /// Fixed cost of one operation (dispatch, allocation, autodiff bookkeeping), seconds.
    pub op_seconds: f64,
}

impl Default for CostModel {
    /// Calibrated on the development machine on 2026-11-30: 2 cores (AVX-512), burn 0.22.1
    /// `flex` with `rayon`, `simd` and `x86-v4`, glibc malloc kept from trimming
    /// (`experiments::alloc`), by `./scripts/bench.sh calibrate` (three runs agreed within
    /// about 10%, but for the depthwise forward, which came out at 10.6 or 18.7 GFLOP/s).
    fn default() -> Self {
        Self {
            spatial: ConvRates {
                forward: 78.0e9,
                input_grad: 91.0e9,
                weight_grad: 55.0e9,
            },
            narrow: ConvRates {
                forward: 13.0e9,
                input_grad: 7.6e9,
                weight_grad: 9.0e9,
            },
            pointwise: ConvRates {
                forward: 40.0e9,
                input_grad: 28.0e9,
                weight_grad: 58.0e9,
            },
            depthwise: ConvRates {
                forward: 15.0e9,
                input_grad: 2.0e9,
                weight_grad: 0.88e9,
            },
            matmul: 137.0e9,
            bandwidth: 45.0e9,
            op_seconds: 0.36e-6,
        }
    }
}

/// What a layer computes in one call: the input's batch and spatial size, and which
/// gradients the step needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Batch size.
    pub batch: usize,
    /// Spatial size of the input, one entry per axis.
    pub input: Vec<usize>,
    /// Whether a backward pass follows (autodiff).
    pub training: bool,
    /// Whether the gradient with respect to the layer's input is needed (false for a first
    /// layer fed with data).
    pub input_grad: bool,
}

impl Workload {
    /// Inference (no backward pass) on `batch` inputs of spatial size `input`.
    pub fn inference(batch: usize, input: Vec<usize>) -> Self {
        Self {
            batch,
            input,
            training: false,
            input_grad: false,
        }
    }

    /// A training step that needs the input gradient (any layer but the first).
    pub fn training(batch: usize, input: Vec<usize>) -> Self {
        Self {
            batch,
            input,
            training: true,
            input_grad: true,
        }
    }
}

/// A kxk conv with at most this many input or output channels runs at the
/// [`CostModel::narrow`] rates.
pub const NARROW: usize = 16;

/// One convolution of a form: its size and which passes it runs.
struct ConvOp {
    kind: OpKind,
    /// The smaller of its input and output channel counts.
    width: f64,
    /// Forward FLOP: 2·B·positions_out·out·in_per_group·K.
    flops: f64,
    /// Input + output + weight elements.
    elements: f64,
    input_grad: bool,
    weight_grad: bool,
}

/// Output length of one conv axis.
fn out_len(len: usize, k: usize, stride: usize, dilation: usize, pad: (usize, usize)) -> usize {
    let span = dilation * (k.max(1) - 1) + 1;
    let padded = len + pad.0 + pad.1;
    if padded < span {
        0
    } else {
        (padded - span) / stride.max(1) + 1
    }
}

impl CostModel {
    /// Seconds one conv op takes, all its passes.
    fn conv(&self, op: &ConvOp) -> f64 {
        let rates = match op.kind {
            OpKind::Spatial if op.width <= NARROW as f64 => self.narrow,
            OpKind::Spatial => self.spatial,
            OpKind::Pointwise => self.pointwise,
            OpKind::Depthwise => self.depthwise,
        };
        let pass =
            |rate: f64| op.flops / rate + op.elements * 4.0 / self.bandwidth + self.op_seconds;
        let mut t = pass(rates.forward);
        if op.input_grad {
            t += pass(rates.input_grad);
        }
        if op.weight_grad {
            t += pass(rates.weight_grad);
        }
        t
    }

    /// Seconds of an element-wise pass over `elements` values reading `reads` operands.
    fn elementwise(&self, elements: f64, reads: f64) -> f64 {
        elements * 4.0 * (reads + 1.0) / self.bandwidth + self.op_seconds
    }

    /// Seconds of a matmul of `flops` (with its gradients when `training`).
    fn matmul(&self, flops: f64, training: bool) -> f64 {
        let one = flops / self.matmul + self.op_seconds;
        if training { 3.0 * one } else { one }
    }

    /// The modelled seconds of one call of `mode` (weight-space or bypass; `Auto` is the
    /// cheaper of the two) for a `variant` adapter of rank `rank` on a layer of `geometry`.
    pub fn seconds(
        &self,
        mode: ForwardMode,
        variant: ConvVariant,
        geometry: &ConvGeometry,
        rank: usize,
        work: &Workload,
    ) -> f64 {
        match mode {
            ForwardMode::WeightSpace => self.weight_space(variant, geometry, rank, work),
            ForwardMode::Bypass => self.bypass(variant, geometry, rank, work),
            ForwardMode::Auto => self
                .weight_space(variant, geometry, rank, work)
                .min(self.bypass(variant, geometry, rank, work)),
        }
    }

    /// The cheaper form for this call: [`ForwardMode::WeightSpace`] or
    /// [`ForwardMode::Bypass`]. Grouped convs always get weight-space (the bypass form is not
    /// exact for them).
    pub fn choose(
        &self,
        variant: ConvVariant,
        geometry: &ConvGeometry,
        rank: usize,
        work: &Workload,
    ) -> ForwardMode {
        if geometry.groups != 1 {
            return ForwardMode::WeightSpace;
        }
        let ws = self.weight_space(variant, geometry, rank, work);
        let bp = self.bypass(variant, geometry, rank, work);
        if bp < ws {
            ForwardMode::Bypass
        } else {
            ForwardMode::WeightSpace
        }
    }

    fn positions(geometry: &ConvGeometry, work: &Workload) -> (f64, f64) {
        let padding = geometry.padding_for(&work.input);
        let out: usize = (0..geometry.dims())
            .map(|j| {
                out_len(
                    work.input.get(j).copied().unwrap_or(1),
                    geometry.kernel[j],
                    geometry.stride[j],
                    geometry.dilation[j],
                    padding.get(j).copied().unwrap_or((0, 0)),
                )
            })
            .product();
        let inp: usize = work.input.iter().product();
        (inp as f64, out as f64)
    }

    fn weight_space(
        &self,
        variant: ConvVariant,
        g: &ConvGeometry,
        rank: usize,
        work: &Workload,
    ) -> f64 {
        let (n_in, n_out) = Self::positions(g, work);
        let (b, s, t) = (
            work.batch as f64,
            g.in_channels as f64,
            g.out_channels as f64,
        );
        let (c, k) = (g.in_per_group() as f64, g.kernel_volume() as f64);
        let weight = t * c * k;
        let recompose_flops = variant.recompose_flops(&g.weight_shape(), rank);
        let kind = if g.groups > 1 && g.groups == g.in_channels && g.groups == g.out_channels {
            OpKind::Depthwise
        } else if k > 1.0 {
            OpKind::Spatial
        } else {
            OpKind::Pointwise
        };
        let conv = ConvOp {
            kind,
            width: s.min(t),
            flops: 2.0 * b * n_out * t * c * k,
            elements: b * (s * n_in + t * n_out) + weight,
            input_grad: work.training && work.input_grad,
            weight_grad: work.training,
        };
        let passes = if work.training { 2.0 } else { 1.0 };
        self.matmul(recompose_flops, work.training)
            + passes * self.elementwise(weight, 2.0)
            + self.conv(&conv)
    }

    fn bypass(&self, variant: ConvVariant, g: &ConvGeometry, rank: usize, work: &Workload) -> f64 {
        let (n_in, n_out) = Self::positions(g, work);
        let (b, s, t) = (
            work.batch as f64,
            g.in_channels as f64,
            g.out_channels as f64,
        );
        let k = g.kernel_volume() as f64;
        let train = work.training;
        let first_dx = train && work.input_grad;
        let op = |kind, cin: f64, cout: f64, taps: f64, pin: f64, pout: f64, dx: bool| ConvOp {
            kind,
            width: cin.min(cout),
            flops: 2.0 * b * pout * cout * cin * taps,
            elements: b * (cin * pin + cout * pout) + cout * cin * taps,
            input_grad: dx,
            weight_grad: train,
        };
        let base_kind = if k > 1.0 {
            OpKind::Spatial
        } else {
            OpKind::Pointwise
        };
        let base = ConvOp {
            weight_grad: false,
            ..op(base_kind, s, t, k, n_in, n_out, first_dx)
        };
        let ops = variant.branch_ops(g, rank, (n_in, n_out));
        let mut total = self.conv(&base);
        let recompose = self.matmul(variant.recompose_flops(&g.weight_shape(), rank), train);
        if ops.is_empty() {
            // No cheaper branch: one more full conv, with the recomposed update as its kernel.
            total += recompose;
            total += self.conv(&ConvOp {
                weight_grad: train,
                ..op(base_kind, s, t, k, n_in, n_out, first_dx)
            });
        }
        if variant.bypass_recomposes() {
            // The update again for a per-channel norm of W + scale·ΔW, and the rescale of the
            // output.
            let weight = t * g.in_per_group() as f64 * k;
            let passes = if train { 2.0 } else { 1.0 };
            total += recompose + passes * self.elementwise(weight, 2.0);
            total += self.elementwise(b * t * n_out, 2.0);
        }
        for (i, b) in ops.iter().enumerate() {
            let BranchOp {
                kind,
                cin,
                cout,
                taps,
                positions_in,
                positions_out,
            } = *b;
            let dx = if i == 0 { first_dx } else { train };
            total += self.conv(&op(kind, cin, cout, taps, positions_in, positions_out, dx));
        }
        // Adding the branch to the base output (and, in training, splitting its gradient;
        // the input gradient of base and branch are summed when the input needs one).
        let out = b * t * n_out;
        total += self.elementwise(out, 2.0);
        if first_dx {
            total += self.elementwise(b * s * n_in, 2.0);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's structure, independent of the calibrated rates: a merged-size 1x1 adapter
    /// on a large-channel layer costs bypass more than the recomposition, while the weight
    /// gradient of a large kernel at a large batch makes bypass cheaper in training.
    #[test]
    fn the_choice_follows_the_weight_gradient() {
        let model = CostModel::default();
        let g = ConvGeometry {
            padding: crate::geometry::Padding::Explicit(vec![(1, 1), (1, 1)]),
            ..ConvGeometry::new(64, 64, vec![3, 3])
        };
        // Inference: weight-space is one conv plus a tiny recomposition; bypass is two convs.
        let infer = Workload::inference(8, vec![56, 56]);
        assert_eq!(
            model.choose(ConvVariant::LoCon, &g, 4, &infer),
            ForwardMode::WeightSpace
        );
        // Training on a big activation: the base conv's weight gradient dominates.
        let train = Workload::training(64, vec![56, 56]);
        let ws = model.seconds(
            ForwardMode::WeightSpace,
            ConvVariant::Tucker2,
            &g,
            4,
            &train,
        );
        let bp = model.seconds(ForwardMode::Bypass, ConvVariant::Tucker2, &g, 4, &train);
        assert!(bp < ws, "bypass {bp} vs weight-space {ws}");
        assert_eq!(
            model.choose(ConvVariant::Tucker2, &g, 4, &train),
            ForwardMode::Bypass
        );
        let auto = model.seconds(ForwardMode::Auto, ConvVariant::Tucker2, &g, 4, &train);
        assert_eq!(auto, bp);
        // Grouped convs never take the bypass form.
        let grouped = ConvGeometry { groups: 2, ..g };
        assert_eq!(
            model.choose(ConvVariant::LoCon, &grouped, 4, &train),
            ForwardMode::WeightSpace
        );
    }

    /// A type without a branch pays one more full conv in bypass form, so `auto` runs it
    /// weight-space; DoRA's bypass pays LoCon's branch plus the recomposition its norm needs.
    #[test]
    fn bypass_costs_what_each_type_runs() {
        let model = CostModel::default();
        let g = ConvGeometry {
            padding: crate::geometry::Padding::Explicit(vec![(1, 1), (1, 1)]),
            ..ConvGeometry::new(64, 64, vec![3, 3])
        };
        for work in [
            Workload::inference(8, vec![28, 28]),
            Workload::training(64, vec![28, 28]),
        ] {
            let cost = |mode, v| model.seconds(mode, v, &g, 4, &work);
            let loha_bp = cost(ForwardMode::Bypass, ConvVariant::LoHa);
            let loha_ws = cost(ForwardMode::WeightSpace, ConvVariant::LoHa);
            assert!(
                loha_bp > loha_ws,
                "loha: bypass {loha_bp} vs weight {loha_ws}"
            );
            assert_eq!(
                model.choose(ConvVariant::LoHa, &g, 4, &work),
                ForwardMode::WeightSpace
            );
            let dora = cost(ForwardMode::Bypass, ConvVariant::Dora);
            let locon = cost(ForwardMode::Bypass, ConvVariant::LoCon);
            assert!(dora > locon, "dora bypass {dora} vs locon bypass {locon}");
        }
    }

    /// A kxk conv with few input or output channels is priced at the narrow rates: LoCon's
    /// down conv (64 -> 4) costs its FLOPs at `narrow`, so making `narrow` as fast as
    /// `spatial` makes LoCon's bypass cheaper, and Tucker-2's (whose kxk conv is its r->r
    /// core) cheaper too, while the wide base conv's cost does not move.
    #[test]
    fn narrow_convs_pay_the_narrow_rates() {
        let slow = CostModel::default();
        let fast = CostModel {
            narrow: slow.spatial,
            ..slow
        };
        let g = ConvGeometry {
            padding: crate::geometry::Padding::Explicit(vec![(1, 1), (1, 1)]),
            ..ConvGeometry::new(64, 64, vec![3, 3])
        };
        let work = Workload::training(8, vec![56, 56]);
        let bp = |m: &CostModel, variant| m.seconds(ForwardMode::Bypass, variant, &g, 4, &work);
        for variant in [ConvVariant::LoCon, ConvVariant::Tucker2] {
            assert!(
                bp(&fast, variant) < bp(&slow, variant),
                "{variant}: {} vs {}",
                bp(&fast, variant),
                bp(&slow, variant)
            );
        }
        // The LoCon down conv alone: 2·B·P·r·s·K FLOPs per pass at the narrow rates.
        let ws =
            |m: &CostModel| m.seconds(ForwardMode::WeightSpace, ConvVariant::LoCon, &g, 4, &work);
        assert_eq!(ws(&fast), ws(&slow));
        let flops = 2.0 * 8.0 * 56.0 * 56.0 * 4.0 * 64.0 * 9.0;
        let rates = |r: ConvRates| flops / r.forward + flops / r.input_grad + flops / r.weight_grad;
        let locon = ConvVariant::LoCon;
        let gap =
            (bp(&slow, locon) - bp(&fast, locon)) - (rates(slow.narrow) - rates(slow.spatial));
        assert!(
            gap.abs() < 1e-9,
            "the down conv's price moved by another amount: {gap}"
        );
    }

    #[test]
    fn output_lengths() {
        assert_eq!(out_len(28, 3, 1, 1, (1, 1)), 28);
        assert_eq!(out_len(28, 3, 2, 1, (1, 1)), 14);
        assert_eq!(out_len(7, 3, 1, 2, (0, 0)), 3);
        assert_eq!(out_len(2, 5, 1, 1, (0, 0)), 0);
    }
}
