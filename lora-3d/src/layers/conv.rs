//! Conv2d -> Conv3d.

use burn::nn::PaddingConfig2d;
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv2d, Conv3d};

use crate::error::{InflateError, Result};
use crate::inflate::{Inflate, Inflation};

/// Bias, groups, and height/width stride, padding and dilation are kept. Depth gets the
/// options' kernel size, stride and padding, and dilation 1.
///
/// burn's Conv3d pads symmetrically, so asymmetric explicit padding is refused, and so is
/// `Same` padding unless it is symmetric for every input size (stride 1 and odd kernels, where
/// it is `(k-1)/2`; burn ignores dilation there, and so does the inflated layer).
impl Inflate for Conv2d {
    type Output = Conv3d;

    fn inflate(self, cx: &mut Inflation) -> Result<Conv3d> {
        let path = cx.path(self.weight.id);
        let [kh, kw] = self.kernel_size;
        let (ph, pw) = match self.padding {
            PaddingConfig2d::Valid => (0, 0),
            PaddingConfig2d::Explicit(top, left, bottom, right) => {
                if top != bottom || left != right {
                    return Err(InflateError::Padding {
                        path,
                        reason: format!(
                            "asymmetric padding (top {top}, left {left}, bottom {bottom}, right \
                             {right}); burn's Conv3d pads each axis symmetrically"
                        ),
                    });
                }
                (top, left)
            }
            PaddingConfig2d::Same => {
                if self.stride != [1, 1] || kh % 2 == 0 || kw % 2 == 0 {
                    return Err(InflateError::Padding {
                        path,
                        reason: format!(
                            "`Same` padding with stride {:?} and kernel {:?} depends on the input \
                             size and can be asymmetric; burn's Conv3d pads symmetrically. Use \
                             explicit padding",
                            self.stride, self.kernel_size
                        ),
                    });
                }
                ((kh - 1) / 2, (kw - 1) / 2)
            }
        };
        let options = cx.options().clone();
        let bias = self.bias.map(|b| cx.carry(b)).transpose()?;
        let weight = cx.kernel(self.weight)?;
        Ok(Conv3d {
            weight,
            bias,
            stride: [options.depth_stride, self.stride[0], self.stride[1]],
            kernel_size: [options.depth, kh, kw],
            dilation: [1, self.dilation[0], self.dilation[1]],
            groups: self.groups,
            padding: PaddingConfig3d::Explicit(options.padding(), ph, pw),
        })
    }
}
