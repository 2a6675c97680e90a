# ruff: noqa: C408 - dict(...) keeps the configs readable side by side with mmdet3d's own
"""mmdet3d config dicts of BEVFusion's nuScenes detector parts, as its configs write them.

The sparse grid is mmdet3d 1.4's zyx order (SparseEncoder takes coordinates as (batch, z, y, x)),
so BEVFusion's xyz padding (1, 1, 0) of the third stage reads (0, 1, 1) here.
"""

NORM_2D = dict(type="BN", eps=1e-3, momentum=0.01)

SECOND = dict(
    type="SECOND",
    in_channels=256,
    out_channels=[128, 256],
    layer_nums=[5, 5],
    layer_strides=[1, 2],
    norm_cfg=NORM_2D,
    conv_cfg=dict(type="Conv2d", bias=False),
)

SECONDFPN = dict(
    type="SECONDFPN",
    in_channels=[128, 256],
    out_channels=[256, 256],
    upsample_strides=[1, 2],
    norm_cfg=NORM_2D,
    upsample_cfg=dict(type="deconv", bias=False),
    use_conv_for_no_stride=True,
)

SPARSE_ENCODER = dict(
    type="SparseEncoder",
    in_channels=5,
    sparse_shape=[41, 1440, 1440],
    order=("conv", "norm", "act"),
    norm_cfg=dict(type="BN1d", eps=1e-3, momentum=0.01),
    output_channels=128,
    encoder_channels=((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
    encoder_paddings=((0, 0, 1), (0, 0, 1), (0, 0, (0, 1, 1)), (0, 0)),
    block_type="basicblock",
)

RESNET = dict(
    type="mmdet.ResNet",
    depth=50,
    num_stages=4,
    out_indices=(1, 2, 3),
    frozen_stages=-1,
    norm_cfg=dict(type="BN", requires_grad=True),
    norm_eval=False,
    style="pytorch",
)
